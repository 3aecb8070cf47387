#!/usr/bin/env python3
"""instances.sh's load driver and report (issue #26: several instances as one vendor client).

drive:  offers --offered requests a second for --seconds through the load balancer (one in ten a
        sale, each with a new id; the rest the benchmark recalc), SIGKILLs --kill halfway, then
        repeats every sale that got no 201 until it does (as MoySklad would), and reads the
        vendor's state of the sale's customer before and after. Prints one JSON document.
report: that document plus the sandbox's per-second counts → the `<!-- instances -->` section
        of benches/results.md.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from decimal import Decimal

WORKERS = 256


def connection(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=10)


def post(conn, path, headers, body):
    """One POST on a kept-alive connection → (status, headers, parsed body or text)."""
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
    answer = conn.getresponse()
    data = answer.read()
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data.decode("utf-8", "replace")
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, parsed


class Driver:
    def __init__(self, args):
        self.args = args
        self.auth = {"Lognex-Discount-API-Auth-Token": args.token}
        with open(args.recalc, encoding="utf-8") as f:
            self.recalc = f.read().encode()
        with open(args.sale, encoding="utf-8") as f:
            self.sale_template = f.read()
        self.local = threading.local()

    def sale_body(self, sale_id):
        return self.sale_template.replace("__ID__", sale_id).encode()

    def conn(self):
        if getattr(self.local, "conn", None) is None:
            self.local.conn = connection(self.args.url)
        return self.local.conn

    def send(self, path, body):
        """→ (status or None for a transport failure, headers, body)."""
        try:
            return post(self.conn(), path, self.auth, body)
        except (OSError, http.client.HTTPException) as e:
            self.local.conn = None
            return None, {}, str(e)

    def customer(self):
        """The sale customer's state at the vendor: (bonuses incl. pending, levelSpent)."""
        conn = connection(self.args.vendor)
        status, _, body = post(conn, "/get-balance", {"X-Processing-Key": self.args.key},
                               json.dumps({"externalId": "demo-3"}))
        conn.close()
        if status != 200 or not isinstance(body, dict) or "client" not in body:
            sys.exit(f"instances.py: get-balance answered {status}: {body}")
        client = body["client"]
        return (int(client.get("bonuses") or 0) + int(client.get("pendingBonuses") or 0),
                Decimal(str(body["level"]["levelSpent"])))

    def sell_until_recorded(self, ids, deadline):
        """MoySklad's repeats: every sale again until it gets a 201; → rounds taken."""
        pending, rounds = list(ids), 0
        while pending:
            if time.monotonic() > deadline:
                sys.exit(f"instances.py: {len(pending)} sales not recorded in time: {pending[:5]}…")
            rounds += 1
            still = [i for i in pending if self.send("/retaildemand", self.sale_body(i))[0] != 201]
            pending = still
            if pending:
                time.sleep(0.5)
        return rounds

    def drive(self):
        a = self.args
        # What one sale does to the customer, measured with a sale of its own (1.1 s apart: the
        # vendor's per-second limit counts these calls too).
        before = self.customer()
        time.sleep(1.1)
        self.sell_until_recorded([str(uuid.uuid4())], time.monotonic() + 30)
        time.sleep(1.1)
        after_one = self.customer()
        per_sale = (after_one[0] - before[0], after_one[1] - before[1])
        if per_sale[1] <= 0:
            sys.exit(f"instances.py: the check sale changed nothing at the vendor: {before} → {after_one}")
        time.sleep(1.1)

        total = a.seconds * a.offered
        jobs = queue.Queue()
        results = []
        lock = threading.Lock()
        start = time.monotonic() + 0.2

        def worker():
            while True:
                job = jobs.get()
                if job is None:
                    return
                n, at, sale_id = job
                delay = at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if sale_id:
                    status, headers, body = self.send("/retaildemand", self.sale_body(sale_id))
                else:
                    status, headers, body = self.send("/retaildemand/recalc", self.recalc)
                done = time.monotonic()
                code = None
                if isinstance(body, dict) and body.get("errors"):
                    code = body["errors"][0].get("code")
                with lock:
                    results.append({"n": n, "at": at - start, "latency": done - at, "sale": sale_id,
                                    "status": status, "retry_after": headers.get("retry-after"),
                                    "code": code})

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
        for t in threads:
            t.start()
        sales = []
        for n in range(total):
            sale_id = None
            if n % 10 == 0:
                sale_id = str(uuid.uuid4())
                sales.append(sale_id)
            jobs.put((n, start + n / a.offered, sale_id))
        killed_at = None
        halfway = start + a.seconds / 2
        while time.monotonic() < halfway:
            time.sleep(0.01)
        os.kill(a.kill, signal.SIGKILL)
        killed_at = time.monotonic() - start
        for _ in threads:
            jobs.put(None)
        for t in threads:
            t.join()
        offered_for = max(r["at"] for r in results)

        recorded = {r["sale"] for r in results if r["sale"] and r["status"] == 201}
        repeated = [s for s in sales if s not in recorded]
        repeat_started = time.monotonic()
        rounds = self.sell_until_recorded(repeated, time.monotonic() + 120)
        repeat_took = time.monotonic() - repeat_started
        time.sleep(1.1)
        final = self.customer()
        instances = []
        for url in a.bridges.split(","):
            conn = connection(url)
            conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {a.metrics_token}"})
            text = conn.getresponse().read().decode()
            conn.close()
            instances += [float(line.split()[-1]) for line in text.splitlines()
                          if line.split(" ")[0].split("{")[0] == "loyalty_bridge_instances"]
        json.dump({
            "seconds": a.seconds, "offered": a.offered, "killed_at": killed_at,
            "offered_for": offered_for, "results": results, "sales": len(sales),
            "repeated": len(repeated), "repeat_rounds": rounds, "repeat_took": repeat_took,
            "per_sale": [per_sale[0], str(per_sale[1])], "after_one": [after_one[0], str(after_one[1])],
            "final": [final[0], str(final[1])], "instances_seen_after": instances,
        }, sys.stdout)


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def first_line(*cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "not found"


def report(a):
    with open(a.drive, encoding="utf-8") as f:
        d = json.load(f)
    with open(a.vendor, encoding="utf-8") as f:
        v = json.load(f)
    results = d["results"]
    by_status = {}
    for r in results:
        by_status[str(r["status"])] = by_status.get(str(r["status"]), 0) + 1
    refused = [r for r in results if r["status"] == 429]
    envelopes_ok = all(r["retry_after"] and r["code"] == 9429 for r in refused)
    others = {k: n for k, n in by_status.items() if k not in ("200", "201", "429")}
    # Requests the killed instance held when it died are lost to their callers (nginx passes no
    # POST that reached an instance on to another; MoySklad repeats it): those sent in the
    # second and a half before the kill (a request may wait up to max_wait_ms for its turn).
    lost = [r for r in results if str(r["status"]) in others]
    at_kill = [r for r in lost if d["killed_at"] - 1.5 <= r["at"] <= d["killed_at"] + 0.1]
    answered = [r["latency"] * 1000 for r in results if r["status"] in (200, 201)]
    refused_ms = [r["latency"] * 1000 for r in refused]
    per_second = v["calls_per_second"]
    busy = [n for n in per_second if n > 0]
    rate_line = a.limits  # e.g. limits = { requests_per_second = 20, burst = 5 }
    nums = dict(part.split("=") for part in rate_line.split("{", 1)[1].rstrip("} ").replace(" ", "").split(","))
    rate, burst = int(nums["requests_per_second"]), int(nums["burst"])
    over = [n for n in per_second if n > rate + burst]
    sales, per_sale = d["sales"] + 1, (d["per_sale"][0], Decimal(d["per_sale"][1]))  # + the check sale
    after_one = (d["after_one"][0], Decimal(d["after_one"][1]))
    final = (d["final"][0], Decimal(d["final"][1]))
    expect = (after_one[0] + per_sale[0] * d["sales"], after_one[1] + per_sale[1] * d["sales"])
    once = final == expect
    ok = v["refused_over_limit"] == 0 and envelopes_ok and once and len(at_kill) == len(lost)


    def fmt(x, digits=1):
        return "—" if x is None else f"{x:,.{digits}f}"

    commit = first_line("git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD")
    with open("/proc/loadavg", encoding="utf-8") as f:
        load = " ".join(f.read().split()[:3])
    section = [
        "<!-- instances -->",
        "## Several instances, one vendor client (issue #26): `benches/load/instances.sh`",
        "",
        "Generated. `deploy/several-instances/` as shipped (three bridges on one PostgreSQL, its",
        "nginx upstream in front, the tenant's "
        f"`{rate_line.strip()}`), the MAXMA sandbox answering at most {a.vendor_limit} calls in each",
        f"second (rate + burst + 1 for its second boundaries) and 429 above; {d['offered']} requests a second offered",
        f"through nginx for {d['seconds']} s (one in ten a sale, each a new id; the rest the benchmark recalc,",
        f"which costs one vendor call); instance 2 SIGKILLed at {fmt(d['killed_at'])} s. Then every sale without a",
        "201 is repeated through nginx until it gets one, as MoySklad does.",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; commit {commit}; "
        f"machine: {os.cpu_count()} cores, {platform.release()}; load average at the end {load}",
        f"- binary: `{a.binary}`, build: {a.build}; {first_line('nginx', '-v')}",
        "",
        "| what | figure | wanted |",
        "|---|---|---|",
        f"| vendor calls in the busiest second | {max(per_second) if per_second else 0} "
        f"(seconds with calls: {len(busy)}; mean {fmt(statistics.mean(busy) if busy else None)}) "
        f"| ≤ {rate + burst} (rate + burst) |",
        f"| seconds above rate + burst at the vendor | {len(over)} | 0 |",
        f"| calls the vendor refused (429) | {v['refused_over_limit']} | 0 |",
        f"| answers at the till | {json.dumps(by_status, sort_keys=True)} of {len(results)} | "
        "200/201 or 429 |",
        f"| 429s with code 9429 and `Retry-After` | {'all' if envelopes_ok else 'NOT all'} "
        f"({len(refused)}) | all |",
        f"| other answers (nginx 502s, transport failures) | {json.dumps(others, sort_keys=True) if others else 'none'}"
        f"{f', {len(at_kill)} of them in flight at the kill' if lost else ''} "
        "| only requests in flight on the killed instance |",
        f"| answered: p50 / p99 ms | {fmt(pct(answered, 50))} / {fmt(pct(answered, 99))} | — |",
        f"| refused: p50 / p99 ms | {fmt(pct(refused_ms, 50))} / {fmt(pct(refused_ms, 99))} | — |",
        f"| sales offered / repeated until recorded | {d['sales']} / {d['repeated']} "
        f"({d['repeat_rounds']} rounds, {fmt(d['repeat_took'])} s) | — |",
        f"| each sale took effect once (vendor's bonuses, level spent) | "
        f"{'yes' if once else 'NO'}: {final[0]}, {final[1]} ₽ against {expect[0]}, {expect[1]} ₽ expected "
        f"({sales} sales × {per_sale[0]} bonuses, {per_sale[1]} ₽) | yes |",
        f"| instances the survivors count at the end | {', '.join(fmt(x, 0) for x in d['instances_seen_after'])} "
        "| 2 |",
        "",
        f"Vendor calls per second: {per_second}",
        "<!-- /instances -->",
    ]
    text = open(a.out, encoding="utf-8").read() if os.path.exists(a.out) else "# Benchmark results\n"
    begin, end = text.find("<!-- instances -->"), text.find("<!-- /instances -->")
    block = "\n".join(section)
    if begin >= 0 and end > begin:
        text = text[:begin] + block + text[end + len("<!-- /instances -->"):]
    else:
        # After the generated table of run.sh, before the hand-written sections.
        at = text.find("\n## ")
        text = text + "\n" + block + "\n" if at < 0 else text[:at + 1] + block + "\n\n" + text[at + 1:]
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(block)
    if not ok:
        sys.exit("instances.py: the instances did not act as one client, or a sale was lost or doubled (above)")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("drive")
    for name in ("url", "vendor", "token", "key", "recalc", "sale", "metrics-token", "bridges"):
        d.add_argument(f"--{name}", required=True)
    d.add_argument("--seconds", type=int, required=True)
    d.add_argument("--offered", type=int, required=True)
    d.add_argument("--kill", type=int, required=True)
    r = sub.add_parser("report")
    for name in ("drive", "vendor", "out", "binary", "build", "limits"):
        r.add_argument(f"--{name}", required=True)
    r.add_argument("--vendor-limit", type=int, required=True)
    a = p.parse_args()
    if a.cmd == "drive":
        Driver(a).drive()
    else:
        report(a)


if __name__ == "__main__":
    main()
