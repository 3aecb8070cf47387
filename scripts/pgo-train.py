#!/usr/bin/env python3
"""The training run of the profile-guided build (scripts/build-release.sh).

Starts BIN as the MAXMA emulator and as a bridge in front of it, plays point-of-sale checkouts
through the bridge for a while, then stops both with SIGTERM (an instrumented binary writes its
profile on a normal exit). Each till enrols a customer of its own, then plays checkouts: a
customer lookup by phone, the balance, a few recalcs of a growing cart (earning, or spending
the bonuses earned so far), the sale as priced; every tenth sale (the second, the twelfth, …)
has a line returned. Carts vary in size and prices, so the profile is of the bridge's code
paths in their usual proportions, not of one request.

Every answer's status is checked: a failed call ends the run with the request and the answer,
so a profile is never taken from a bridge that was only answering errors. Python's standard
library only.
"""

import argparse
from collections import Counter
from decimal import Decimal
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

TOKEN = "pgo-training-token-0123456789abcdef"
KEY = "pgo-training-key"
STORE = {"meta": {"href": "", "id": "2b5eb22f-139e-11e6-9464-e4de00000073"}, "name": "Магазин №1"}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The load harness's bridge in front of the sandbox (mappings/maxma.toml, no rate limit in the
# way), its @VARS@ filled in here as run.sh fills them.
CONFIG_TEMPLATE = os.path.join(ROOT, "benches", "load", "bridge.toml.in")


class Failed(Exception):
    pass


def amount(line):
    """A line's paid amount, exact (JSON numbers are read as binary floats)."""
    return Decimal(str(line["discountedPrice"])) * Decimal(str(line["quantity"]))


def money(total):
    """Rounded to kopecks, as the JSON number MoySklad would send."""
    return float(total.quantize(Decimal("0.01")))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, log):
    for _ in range(200):
        if proc.poll() is not None:
            raise Failed(f"exited with {proc.returncode} before listening; {log}:\n{open(log).read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Failed(f"nothing listens on port {port}; see {log}")


class Till:
    """One cashier's connection to the bridge (keep-alive, like MoySklad's)."""

    def __init__(self, port, rng, name):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.rng = rng
        self.name = name
        self.calls = Counter()
        self.spending_sales = 0

    def call(self, method, path, body, expect):
        headers = {"Lognex-Discount-API-Auth-Token": TOKEN}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        text = resp.read()
        op = f"{method} {path.split('?')[0]}"
        self.calls[op] += 1
        if resp.status != expect:
            raise Failed(f"{method} {path} answered {resp.status}, expected {expect}: "
                         f"{text[:500]!r}\nrequest: {data[:500] if data else ''!r}")
        return json.loads(text) if text else None

    def cart(self, positions):
        n = self.rng.choice([1, 2, 3, 5, 8, 10, 15, 25])
        while len(positions) < n:
            positions.append({
                "assortment": {"meta": {"id": f"sku-{self.rng.randrange(5000):04d}"}},
                "quantity": self.rng.choice([1, 1, 1, 2, 3, 0.5, 1.25]),
                "price": round(self.rng.uniform(9, 2500), 2),
            })
        return positions

    def enrol(self, i):
        """A new customer of this till's own (tills spending one customer's bonuses at once would
        race for them, as two real tills would)."""
        who = {"id": f"pgo-customer-{i}", "phone": f"+7999555{i:04d}", "name": f"Покупатель {i}"}
        self.call("POST", "/counterparty",
                  {"retailStore": STORE, "meta": {"href": "", "id": who["id"]}, "name": who["name"],
                   "phone": who["phone"], "legalFirstName": "Покупатель", "legalLastName": str(i)}, 201)
        return who

    def checkout(self, serial, who):
        rng = self.rng
        query = urllib.parse.urlencode({"search": who["phone"], "retailStoreId": STORE["meta"]["id"]})
        found = self.call("GET", f"/counterparty?{query}", None, 200)
        if not found.get("rows"):
            raise Failed(f"the demo customer {who['phone']} was not found: {found}")
        agent = {"meta": {"href": "", "id": who["id"]}, "name": who["name"], "phone": who["phone"]}
        self.call("POST", "/counterparty/detail",
                  {"retailStore": STORE, "meta": agent["meta"], "phone": who["phone"]}, 200)
        positions = []
        priced = None
        spend = rng.random() < 0.3
        for _ in range(rng.choice([1, 2, 3, 4, 5])):
            body = {"retailStore": STORE, "agent": agent, "positions": self.cart(positions)}
            if spend:
                body["bonusProgram"] = {"transactionType": "SPENDING"}
            priced = self.call("POST", "/retaildemand/recalc", body, 200)
        sale_id = f"pgo-{self.name}-{serial}-{os.getpid()}"
        lines = []
        for p in priced["positions"]:
            price = p.get("price", 0)
            lines.append({"assortment": p["assortment"], "quantity": p["quantity"], "price": price,
                          "discountPercent": p.get("discountPercent", 0),
                          "discountedPrice": p.get("discountedPrice", price)})
        paid = money(sum(amount(line) for line in lines))
        bonus = priced.get("bonusProgram", {})
        self.spending_sales += bonus.get("bonusValueToSpend", 0) > 0
        self.call("POST", "/retaildemand",
                  {"retailStore": STORE, "name": f"{serial:05d}", "moment": "2026-11-30 12:00:00",
                   "meta": {"href": "", "id": sale_id}, "agent": agent, "positions": lines,
                   "bonusProgram": {"bonusValueToSpend": bonus.get("bonusValueToSpend", 0),
                                    "bonusValueToEarn": bonus.get("bonusValueToEarn", 0)},
                   "cashSum": paid}, 201)
        if serial % 10 == 1:
            line = lines[0]
            self.call("POST", "/retailsalesreturn",
                      {"retailStore": STORE, "name": f"R-{serial}", "moment": "2026-11-30 12:05:00",
                       "meta": {"href": "", "id": f"{sale_id}-r"},
                       "demand": {"meta": {"href": "", "id": sale_id}}, "agent": agent,
                       "positions": [line],
                       "cashSum": money(amount(line))}, 201)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the loyalty-bridge binary (instrumented)")
    ap.add_argument("--seconds", type=float, default=30, help="how long the tills play checkouts")
    ap.add_argument("--tills", type=int, default=4, help="concurrent tills (connections)")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="lb-pgo-train.")
    procs = []
    try:
        sandbox_port, port = free_port(), free_port()
        sandbox_log, bridge_log = f"{work}/sandbox.log", f"{work}/bridge.log"
        with open(sandbox_log, "w") as log:
            sandbox = subprocess.Popen([args.bin, "sandbox", "maxma", "--listen", f"127.0.0.1:{sandbox_port}",
                                        "--key", KEY], stdout=log, stderr=subprocess.STDOUT)
        procs.append(sandbox)
        wait_port(sandbox_port, sandbox, sandbox_log)
        with open(CONFIG_TEMPLATE) as f:
            config = f.read()
        for var, value in {"@WORK@": work, "@ROOT@": ROOT, "@PORT@": str(port),
                           "@SANDBOX_PORT@": str(sandbox_port)}.items():
            config = config.replace(var, value)
        with open(f"{work}/bridge.toml", "w") as f:
            f.write(config)
        env = dict(os.environ, LB_BENCH_TOKEN=TOKEN, LB_BENCH_KEY=KEY)
        with open(bridge_log, "w") as log:
            bridge = subprocess.Popen([args.bin, "--config", f"{work}/bridge.toml", "serve"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
        procs.append(bridge)
        wait_port(port, bridge, bridge_log)

        until = time.monotonic() + args.seconds
        errors, tills = [], []

        def play(i):
            till = Till(port, random.Random(i), f"t{i}")
            tills.append(till)
            serial = 0
            try:
                who = till.enrol(i)
                while time.monotonic() < until and not errors:
                    till.checkout(serial, who)
                    serial += 1
            except Exception as e:  # noqa: BLE001 - reported below, the run fails
                errors.append(f"till {i}: {e}")

        threads = [threading.Thread(target=play, args=(i,)) for i in range(args.tills)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise Failed("; ".join(errors))
        calls = sum((till.calls for till in tills), Counter())
        mix = ", ".join(f"{n} {op}" for op, n in calls.most_common())
        spending = sum(t.spending_sales for t in tills)
        print(f"pgo-train: {args.tills} tills, {args.seconds:.0f} s, every answer as expected: {mix} "
              f"({spending} sales spent bonuses)")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                print(f"pgo-train: {p.args[0]} did not stop on SIGTERM (no profile from it)", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        print(f"pgo-train: {e}", file=sys.stderr)
        sys.exit(1)
