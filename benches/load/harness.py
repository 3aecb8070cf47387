#!/usr/bin/env python3
"""Helpers of run.sh: vendor bodies from `loyalty-bridge map`, the equality checks, the report."""

import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys


def sections(map_text):
    """`loyalty-bridge map` output → {step: body}."""
    bodies = {}
    for chunk in re.split(r"^# step ", map_text, flags=re.M)[1:]:
        name, _, rest = chunk.partition("\n")
        _, _, body = rest.partition("\n\n")
        bodies[name.strip()] = json.loads(body) if body.strip() else None
    return bodies


def dump(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def vendor_bodies(work):
    with open(os.path.join(work, "recalc.map"), encoding="utf-8") as f:
        recalc = sections(f.read())
    with open(os.path.join(work, "sale.map"), encoding="utf-8") as f:
        sale = sections(f.read())
    for step in ("balance", "settings", "calc"):
        if step not in recalc:
            sys.exit(f"harness: the mapping made no {step} call for the recalc cart")
    dump(os.path.join(work, "vendor-recalc.json"), recalc)
    dump(os.path.join(work, "vendor-calc.json"), recalc["calc"])
    if "set" not in sale or "confirm" not in sale:
        sys.exit("harness: the mapping made no set/confirm calls for the sale")
    txid = sale["set"]["txid"]
    text = json.dumps(sale["set"], ensure_ascii=False).replace(json.dumps(txid), '"__TXID__"')
    with open(os.path.join(work, "vendor-set.json"), "w", encoding="utf-8") as f:
        f.write(text)
    confirm = dict(sale["confirm"], txid="__TXID__", ticket="__TICKET__")
    dump(os.path.join(work, "vendor-confirm.json"), confirm)


def differ(name, left, right):
    if left == right:  # Python compares 250 and 250.0 as equal: numbers by value, not text
        return False
    print(f"harness: {name} differ:\n  {json.dumps(left, ensure_ascii=False, sort_keys=True)}\n"
          f"  {json.dumps(right, ensure_ascii=False, sort_keys=True)}", file=sys.stderr)
    return True


def check(work):
    a, b = load(os.path.join(work, "a.json")), load(os.path.join(work, "b.json"))
    if "calculationResult" not in a or a.get("errorCode"):
        sys.exit(f"harness: the sandbox refused the calculation: {a}")
    bad = differ("the sandbox's answers directly and through nginx", a, b)
    bad |= differ("the vendor requests of njs and of the mapping",
                  load(os.path.join(work, "c-vendor.json")),
                  load(os.path.join(work, "vendor-recalc.json")))
    bad |= differ("the LoyaltyAPI answers of njs and of the bridge",
                  load(os.path.join(work, "c.json")), load(os.path.join(work, "d.json")))
    if bad:
        sys.exit(1)
    print("harness: checks passed (same vendor requests, same LoyaltyAPI answer)", file=sys.stderr)


def run(*cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001 - a missing tool is a note, not a failure
        return f"? ({e})"


def machine_note(root):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    with open("/proc/loadavg") as f:
        load_avg = " ".join(f.read().split()[:3])
    commit = run("git", "-C", root, "rev-parse", "--short", "HEAD")
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; commit {commit}",
        f"- machine: {os.cpu_count()} cores ({cpu}), {mem_kib // 1024 // 1024} GiB; kernel {platform.release()}; "
        f"load average at the end {load_avg}",
        f"- {run('nginx', '-v')}; njs module {run('dpkg-query', '-W', '-f=${Version}', 'libnginx-mod-http-js')}; "
        f"{run('wrk', '-v')}; {run('oha', '--version')}; {run('rustc', '-V')}",
    ]


def fmt(x, digits=0):
    return "—" if x is None else f"{x:,.{digits}f}"


def ratio(x, y):
    return "—" if not x or not y else f"{x / y:.2f}"


def report(work, out, binary, build):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sat, rate, rss, slow = {}, {}, {}, None
    with open(os.path.join(work, "results.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if isinstance(r.get("oha"), str):  # oha's JSON report, in a file of its own
                r["oha"] = load(os.path.join(work, r["oha"]))
            if r["kind"] == "saturate":
                sat.setdefault((r["setup"], r["op"]), {})[r.get("round", 1)] = r
            elif r["kind"] == "rate":
                rate.setdefault(r["setup"], {})[r.get("round", 1)] = r["oha"]
            elif r["kind"] == "rss":
                rss[r["setup"]] = r["hwm_kib"]
            else:
                slow = r

    def run_per_sec(r, setup, op):
        n = r["wrk"]["requests"] / (2 if op == "sale" and setup in "ab" else 1)
        return n / (r["wrk"]["duration_us"] / 1e6)

    def run_cpu_us(r, setup, op):
        if not r["wrk"]["requests"]:
            return None
        n = r["wrk"]["requests"] / (2 if op == "sale" and setup in "ab" else 1)
        return r["cpu_ticks"] / r["clk_tck"] * 1e6 / n

    def median_of(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    def per_sec(setup, op):
        """Requests per second at saturation, median over the rounds."""
        return median_of(run_per_sec(r, setup, op) for r in sat.get((setup, op), {}).values())

    def cpu_us(setup, op):
        """CPU per request at saturation, median over the rounds."""
        return median_of(run_cpu_us(r, setup, op) for r in sat.get((setup, op), {}).values())

    def sat_ratios(x, y):
        """x's saturation over y's within each round, in round order."""
        xs, ys = sat.get((x, "recalc"), {}), sat.get((y, "recalc"), {})
        return [run_per_sec(xs[r], x, "recalc") / run_per_sec(ys[r], y, "recalc")
                for r in sorted(xs) if r in ys and run_per_sec(ys[r], y, "recalc")]

    def pct_in(o, p):
        v = o and o.get("latencyPercentiles", {}).get(p)
        return None if v is None else v * 1000

    def pct(setup, p):
        """The percentile's median over the rounds, in ms."""
        values = [v for o in rate.get(setup, {}).values() if (v := pct_in(o, p)) is not None]
        return statistics.median(values) if values else None

    names = {"a": "(a) MAXMA sandbox direct", "b": "(b) nginx proxy_pass",
             "c": "(c) nginx + njs mapping", "d": "(d) loyalty-bridge"}
    calls = {"a": "1", "b": "1", "c": "3", "d": "1 (+ cached balance, settings)"}
    lines = [
        "# Benchmark results",
        "",
        "Written by `benches/load/run.sh` (benches/README.md). Recalc: a 10-position SPENDING cart",
        "(`benches/load/recalc.json`); sale: `benches/load/sale.json`, each with a new id. (a) and (b)",
        "get the vendor requests the mapping produces (`loyalty-bridge map`): for a recalc the",
        "calculation, for a sale set-purchase + confirm-ticket (two requests, counted as one sale).",
        "Saturation: wrk, recalc 2 threads × 64 connections, in rounds that run every setup in",
        "turn (a, b, d, c): a figure is its median over the rounds, and a goal's ratio the median",
        "of the ratios within each round; sale 16 × 16, one run. Fixed rate: oha at",
        "1,000 recalc/s, 50 connections, latency corrected for coordinated omission, in rounds",
        "that run every setup in turn: a percentile is its median over the rounds, and added",
        "latency the median of (d) − (a) within each round. CPU is the",
        "server under test's utime+stime over the saturation run (the sandbox for (a); nginx",
        "master + workers or the bridge otherwise — not the sandbox behind them); peak RSS is",
        "VmHWM at the end of all runs (summed over nginx's processes). Logs: access logs off",
        "everywhere (bridge at `warn`).",
        "",
        "**Machine note:** everything — load generator, sandbox, server under test — shares one",
        "machine's cores (the load average below tells whether anything else ran): absolute",
        "figures are noisy; compare setups within one run.",
        "",
        *machine_note(root),
        f"- bridge and sandbox binary: `{binary}` ({os.path.getsize(binary) / 1e6:.1f} MB), build: {build}",
        "",
        "| setup | recalc/s at saturation | × (a) | × (b) | p50 ms | p99 ms | p99.9 ms | CPU µs/recalc | sales/s at saturation | CPU µs/sale | peak RSS MiB | vendor calls/recalc |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in "abcd":
        rps = per_sec(s, "recalc")
        lines.append(
            f"| {names[s]} | {fmt(rps)} | {ratio(rps, per_sec('a', 'recalc'))} | "
            f"{ratio(rps, per_sec('b', 'recalc'))} | {fmt(pct(s, 'p50'), 3)} | {fmt(pct(s, 'p99'), 3)} | "
            f"{fmt(pct(s, 'p99.9'), 3)} | {fmt(cpu_us(s, 'recalc'))} | {fmt(per_sec(s, 'sale'))} | "
            f"{fmt(cpu_us(s, 'sale'))} | {fmt(rss.get(s, 0) / 1024, 1)} | {calls[s]} |")
    errors = [f"{k[0]} {k[1]} (round {n}): {v['wrk']['errors']} socket errors, {v['wrk']['non2xx']} non-2xx"
              for k, runs in sat.items() for n, v in sorted(runs.items())
              if v["wrk"]["errors"] or v["wrk"]["non2xx"]]
    for s, rounds in rate.items():
        for o in rounds.values():
            bad = sum(n for code, n in o.get("statusCodeDistribution", {}).items() if code != "200")
            # oha cancels what is still in flight when the duration ends: not a failure.
            bad += sum(n for e, n in o.get("errorDistribution", {}).items() if "deadline" not in e)
            if bad:
                errors.append(f"{s} at 1,000/s: {bad} failed")
    lines += ["", "Failed requests: " + ("; ".join(errors) if errors else "none."), ""]
    over = [names[s] for s in "abcd" if (per_sec(s, "recalc") or 0) < 1000]
    if over:
        lines += [f"Below 1,000 recalc/s at saturation, so overloaded in the fixed-rate run (its "
                  f"percentiles measure a growing queue, not added latency): {', '.join(over)}.", ""]

    def added(p):
        """(d) minus (a) within each round (both ran minutes apart at most), median over rounds."""
        a_rounds, d_rounds = rate.get("a", {}), rate.get("d", {})
        diffs = [d - a for r in d_rounds
                 if (d := pct_in(d_rounds[r], p)) is not None
                 and (a := pct_in(a_rounds.get(r), p)) is not None]
        return statistics.median(diffs) if diffs else None

    def added_rounds(p):
        a_rounds, d_rounds = rate.get("a", {}), rate.get("d", {})
        return ", ".join(fmt(pct_in(d_rounds[r], p) - pct_in(a_rounds[r], p), 3)
                         for r in sorted(d_rounds)
                         if pct_in(d_rounds[r], p) is not None and pct_in(a_rounds.get(r), p) is not None)

    d_over_b, d_over_c = sat_ratios("d", "b"), sat_ratios("d", "c")
    sat_db, sat_dc = median_of(d_over_b), median_of(d_over_c)
    codes = slow["oha"].get("statusCodeDistribution", {}) if slow else {}
    answered = codes.get("200", 0)
    slow_rss = slow["hwm_kib"] / 1024 if slow else None
    slowest = slow["oha"]["summary"].get("slowest") if slow else None
    lines += [
        "## Against the goals (issue #7)",
        "",
        "| goal | now | met |",
        "|---|---|---|",
        f"| added latency over (a) at 1,000 recalc/s: p50 ≤ 0.3 ms | {fmt(added('p50'), 3)} ms "
        f"(rounds: {added_rounds('p50')}) | "
        f"{'yes' if added('p50') is not None and added('p50') <= 0.3 else 'no'} |",
        f"| added latency over (a) at 1,000 recalc/s: p99 ≤ 1 ms | {fmt(added('p99'), 3)} ms "
        f"(rounds: {added_rounds('p99')}) | "
        f"{'yes' if added('p99') is not None and added('p99') <= 1 else 'no'} |",
        f"| saturation of (d) ≥ 60% of (b) | {fmt(sat_db, 2)} × (b) "
        f"(rounds: {', '.join(fmt(v, 2) for v in d_over_b)}) | "
        f"{'yes' if sat_db is not None and sat_db >= 0.6 else 'no'} |",
        f"| saturation of (d) above (c) | {fmt(sat_dc, 2)} × (c) "
        f"(rounds: {', '.join(fmt(v, 2) for v in d_over_c)}) | "
        f"{'yes' if sat_dc is not None and sat_dc > 1 else 'no'} |",
        f"| 2,000 concurrent recalcs, vendor answering in 200 ms: all answered | {answered} of 2,000 answered 200 "
        f"{json.dumps(codes)}, slowest {fmt(slowest and slowest * 1000)} ms | {'yes' if answered == 2000 else 'no'} |",
        f"| … with the bridge's peak RSS < 64 MiB | {fmt(slow_rss, 1)} MiB | "
        f"{'yes' if slow_rss is not None and slow_rss < 64 else 'no'} |",
        "",
        "The engine-vs-hand-written ratio is criterion's: `cargo bench -p engine --bench mapping`.",
        "",
    ]
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "vendor-bodies":
        vendor_bodies(sys.argv[2])
    elif cmd == "check":
        check(sys.argv[2])
    elif cmd == "report":
        report(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit(f"unknown command {cmd}")
