#!/usr/bin/env python3
"""Summarises benches/ab/run.sh: per variant and round, the bridge's recalc saturation relative to
nginx proxy_pass in the same run (× (b)), its recalc/s, and its added p50 / p99 over the vendor
at 1,000 recalc/s (each the median of that run's own rounds); then medians over the rounds and
each variant against `shipped`, in percent.

Usage: summary.py DIR ROUNDS VARIANT...   (reads DIR/<variant>-<round>.md, the harness' reports)
"""

import re
import statistics
import sys


def number(text):
    return float(text.replace(",", ""))


def read(path):
    text = open(path, encoding="utf-8").read()
    row = re.search(r"^\| \(d\) loyalty-bridge \| ([\d,.]+) \| [\d.]+ \| ([\d.]+) \|", text, re.M)
    p50 = re.search(r"added latency over \(a\) at 1,000 recalc/s: p50 ≤ [\d.]+ ms \| (-?[\d.]+) ms", text)
    p99 = re.search(r"added latency over \(a\) at 1,000 recalc/s: p99 ≤ [\d.]+ ms \| (-?[\d.]+) ms", text)
    if not (row and p50 and p99):
        raise SystemExit(f"{path}: the harness' report lacks the (d) row or the added-latency goals")
    return {
        "recalc/s": number(row.group(1)),
        "× (b)": number(row.group(2)),
        "added p50 ms": number(p50.group(1)),
        "added p99 ms": number(p99.group(1)),
    }


def main():
    folder, rounds, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    runs = {v: [read(f"{folder}/{v}-{r}.md") for r in range(1, rounds + 1)] for v in variants}
    keys = ["× (b)", "recalc/s", "added p50 ms", "added p99 ms"]
    print("| variant | " + " | ".join(f"{k} (median; rounds)" for k in keys) + " |")
    print("|---|" + "---:|" * len(keys))
    medians = {}
    for v in variants:
        cells = []
        for k in keys:
            values = [run[k] for run in runs[v]]
            medians[(v, k)] = statistics.median(values)
            cells.append(f"{medians[(v, k)]:g} ({', '.join(f'{x:g}' for x in values)})")
        print(f"| {v} | " + " | ".join(cells) + " |")
    if "shipped" in variants:
        print()
        for v in variants:
            if v == "shipped":
                continue
            diffs = []
            for k in keys:
                base = medians[("shipped", k)]
                if base:
                    diffs.append(f"{k} {100 * (medians[(v, k)] - base) / abs(base):+.1f} %")
            print(f"- {v} against shipped: " + "; ".join(diffs))


if __name__ == "__main__":
    main()
