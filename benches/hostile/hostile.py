#!/usr/bin/env python3
"""Issue #24's attacks on a bridge binary, measured: items 1-3 (stdlib Python only).

  python3 benches/hostile/hostile.py --bin target/release/loyalty-bridge [--only connections|cache|fairness]

Each scenario starts BIN as MAXMA emulator(s) and as a bridge on 127.0.0.1 (mappings/maxma.toml,
benches/load/bridge.toml.in), attacks it, prints what a victim saw, and stops everything:

- connections: max_connections (384) + 50 silent TCP connections and 50 h2c ones idle after their
  preface; then the time a new connection's /healthz and recalc take (cut off at 12 s);
- cache: the bridge's RSS at idle, after 300 recalcs each with a different 900 KB agent.meta.id, and
  35 s later (past the lookup TTL of 30 s);
- fairness: tenant A floods (300 h2c POSTs whose bodies never come, over 2 connections, and 150
  concurrent recalcs its vendor answers 5 s late); tenant B's 60 sequential recalcs on a kept-alive
  connection: p50, p99, statuses.

All traffic stays on the loopback; every loop is bounded in count and time.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEMPLATE = os.path.join(ROOT, "benches", "load", "bridge.toml.in")
KEY = "hostile-maxma-key"
TOKEN_A = "hostile-token-a-0001"
TOKEN_B = "hostile-token-b-0002"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
STORE = {"meta": {"href": "", "id": "s1"}, "name": "Касса 1"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, log, seconds=60):
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if proc.poll() is not None:
            sys.exit(f"exited early; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"port {port} did not open; see {log}")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def recalc_body(customer, phone="+79990000001"):
    return json.dumps({"retailStore": STORE, "agent": {"meta": {"id": customer}, "phone": phone},
                       "positions": [{"assortment": {"meta": {"id": "sku-1"}}, "quantity": 1,
                                      "price": 199.90}],
                       "bonusProgram": {"transactionType": "EARNING"}})


class World:
    """Emulators and a bridge, stopped on exit."""

    def __init__(self, bin_path, delays, server_keys=""):
        self.work = tempfile.mkdtemp(prefix="lb-hostile.")
        self.procs = []
        ports = []
        for i, delay in enumerate(delays):
            port = free_port()
            log = f"{self.work}/sandbox-{i}.log"
            cmd = [bin_path, "sandbox", "maxma", "--listen", f"127.0.0.1:{port}", "--key", KEY]
            if delay:
                cmd += ["--delay-ms", str(delay)]
            with open(log, "w") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            self.procs.append(proc)
            wait_port(port, proc, log)
            ports.append(port)
        self.port = free_port()
        with open(TEMPLATE) as f:
            config = f.read()
        for var, value in {"@WORK@": self.work, "@ROOT@": ROOT, "@PORT@": str(self.port),
                           "@SANDBOX_PORT@": str(ports[0])}.items():
            config = config.replace(var, value)
        config = config.replace('[server]\n', f"[server]\n{server_keys}\n", 1)
        config = config.replace('name = "bench"', 'name = "shop-a"')
        if len(ports) > 1:
            config += f'''
[[tenants]]
name = "shop-b"
token = "${{LB_TOKEN_B}}"
mapping = "{ROOT}/mappings/maxma.toml"
base_url = "http://127.0.0.1:{ports[1]}"
credentials = {{ api_key = "${{LB_BENCH_KEY}}" }}
limits = {{ requests_per_second = 1000000, burst = 1000000, max_wait_ms = 1000 }}
'''
        with open(f"{self.work}/bridge.toml", "w") as f:
            f.write(config)
        env = dict(os.environ, LB_BENCH_TOKEN=TOKEN_A, LB_TOKEN_B=TOKEN_B, LB_BENCH_KEY=KEY)
        log = f"{self.work}/bridge.log"
        with open(log, "w") as out:
            self.bridge = subprocess.Popen([bin_path, "--config", f"{self.work}/bridge.toml", "serve"],
                                           env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(self.bridge)
        wait_port(self.port, self.bridge, log)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def call(self, method, path, body=None, token=TOKEN_A, timeout=12, conn=None):
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        started = time.monotonic()
        try:
            headers = {"Lognex-Discount-API-Auth-Token": token, "Content-Type": "application/json"}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as e:
            status = f"no answer ({type(e).__name__})"
        finally:
            if own:
                conn.close()
        return status, time.monotonic() - started


def connections(bin_path):
    with World(bin_path, [0]) as w:
        held = []
        try:
            for _ in range(384 + 50):
                held.append(socket.create_connection(("127.0.0.1", w.port)))
            for _ in range(50):
                s = socket.create_connection(("127.0.0.1", w.port))
                s.sendall(PREFACE)
                held.append(s)
            time.sleep(0.2)
            health = w.call("GET", "/healthz")
            recalc = w.call("POST", "/retaildemand/recalc", recalc_body("c-1"))
        finally:
            for s in held:
                s.close()
    print(f"connections: /healthz {health[0]} in {health[1] * 1000:.0f} ms; "
          f"recalc {recalc[0]} in {recalc[1] * 1000:.0f} ms (cut off at 12 s)")


def cache(bin_path):
    with World(bin_path, [0]) as w:
        time.sleep(1)
        idle = rss_mib(w.bridge.pid)
        statuses = {}
        for i in range(300):
            customer = f"{i:06d}" + "x" * (900 * 1024)
            status, _ = w.call("POST", "/retaildemand/recalc", recalc_body(customer))
            statuses[status] = statuses.get(status, 0) + 1
        after = rss_mib(w.bridge.pid)
        time.sleep(35)
        later = rss_mib(w.bridge.pid)
    print(f"cache: RSS idle {idle:.0f} MiB, after 300 recalcs with 900 KB ids {after:.0f} MiB "
          f"(+{after - idle:.0f}), 35 s later {later:.0f} MiB (+{later - idle:.0f}); statuses {statuses}")


def h2_flood(port, streams, path, token):
    """An h2c connection with `streams` POST streams whose bodies never come."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(PREFACE)

    def field(name, value):
        name, value = name.encode(), value.encode()
        return bytes([0, len(name)]) + name + bytes([len(value)]) + value

    frames = b""
    for i in range(streams):
        block = b"".join(field(n, v) for n, v in [
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "bridge"),
            ("lognex-discount-api-auth-token", token), ("content-type", "application/json")])
        stream_id = 2 * i + 1
        frames += len(block).to_bytes(3, "big") + b"\x01\x04" + stream_id.to_bytes(4, "big") + block
    s.sendall(frames)

    def drain():
        # Read the server's frames; acknowledge its SETTINGS.
        buf = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while len(buf) >= 9:
                    length = int.from_bytes(buf[:3], "big")
                    if len(buf) < 9 + length:
                        break
                    kind, flags = buf[3], buf[4]
                    if kind == 4 and not flags & 1:
                        s.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
                    buf = buf[9 + length:]
        except OSError:
            return

    threading.Thread(target=drain, daemon=True).start()
    return s


def fairness(bin_path):
    with World(bin_path, [5000, 0]) as w:
        till_b = http.client.HTTPConnection("127.0.0.1", w.port, timeout=12)
        for _ in range(3):
            w.call("POST", "/retaildemand/recalc", recalc_body("c-b"), token=TOKEN_B, conn=till_b)
        floods = [h2_flood(w.port, 150, "/retaildemand/recalc", TOKEN_A) for _ in range(2)]
        slow = [threading.Thread(target=w.call, daemon=True,
                                 args=("POST", "/retaildemand/recalc", recalc_body(f"c-a-{i}")))
                for i in range(150)]
        for t in slow:
            t.start()
        time.sleep(1)
        took, statuses = [], {}
        for _ in range(60):
            status, t = w.call("POST", "/retaildemand/recalc", recalc_body("c-b"), token=TOKEN_B,
                               conn=till_b)
            took.append(t * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if isinstance(status, str):
                till_b.close()
                till_b = http.client.HTTPConnection("127.0.0.1", w.port, timeout=12)
        for s in floods:
            s.close()
    took.sort()
    print(f"fairness: tenant B p50 {statistics.median(took):.1f} ms, p99 {took[len(took) * 99 // 100]:.1f} ms, "
          f"max {took[-1]:.1f} ms; statuses {statuses}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--only", choices=["connections", "cache", "fairness"])
    args = ap.parse_args()
    for name, scenario in [("connections", connections), ("fairness", fairness), ("cache", cache)]:
        if args.only in (None, name):
            scenario(args.bin)


if __name__ == "__main__":
    main()
