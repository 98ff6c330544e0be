#!/usr/bin/env python3
"""One compact markdown table per benchmark from `oodcert claims`' claims.csv (issue #14 item 5).

    python3 analysis/experiments/benchmark_summary.py CLAIMS.csv OOD_SET [OOD_SET …]

One row per arm: for each named OOD set its FPR95 and AUROC (mean over seeds with the 95 % t
interval, in percent) with the verdict against the baseline, then the ID accuracy. Every number
is read from claims.csv (written by `oodcert claims`); nothing is recomputed here.
"""
import csv
import sys


def cell(r, side):
    m, lo, hi = (100 * float(r[f"{side}_{k}"]) for k in ("mean", "lo", "hi"))
    return f"{m:.2f} [{lo:.2f}, {hi:.2f}]"


def verdict(r):
    v = r["verdict"]
    d, lo, hi = (100 * float(r[k]) for k in ("diff", "diff_lo", "diff_hi"))
    mark = {"supported": "better", "contradicted": "worse"}.get(v, "undecided")
    return f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}], p = {float(r['p_exact']):.3f}: {mark}"


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: benchmark_summary.py CLAIMS.csv OOD_SET [OOD_SET …]")
    rows = list(csv.DictReader(open(sys.argv[1], newline="")))
    sets = sys.argv[2:]
    for s in sets:
        if not any(r["ood"] == s for r in rows):
            sys.exit(f"benchmark_summary.py: no OOD set {s!r} in {sys.argv[1]}")
    arms = []
    for r in rows:
        if r["arm"] not in arms:
            arms.append(r["arm"])
    base = rows[0]["baseline"]
    find = lambda arm, ood, metric: next(
        r for r in rows if r["arm"] == arm and r["ood"] == ood and r["metric"] == metric)
    head = ["arm"]
    for s in sets:
        head += [f"{s} FPR95 %", f"vs {base} (pp)", f"{s} AUROC %"]
    head += ["ID accuracy %"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    n = lambda r, side: r[f"n_{side}"]
    first = find(arms[0], sets[0], "fpr95")
    line = [f"{base} (n = {n(first, 'baseline')})"]
    for s in sets:
        line += [cell(find(arms[0], s, "fpr95"), "baseline"), "—", cell(find(arms[0], s, "auroc"), "baseline")]
    acc = [r for r in rows if r["metric"] == "id_accuracy"]
    line += [cell(acc[0], "baseline") if acc else "—"]
    print("| " + " | ".join(line) + " |")
    for a in arms:
        r0 = find(a, sets[0], "fpr95")
        line = [f"{a} (n = {n(r0, 'arm')})"]
        for s in sets:
            f, u = find(a, s, "fpr95"), find(a, s, "auroc")
            line += [cell(f, "arm"), verdict(f), cell(u, "arm")]
        ra = [r for r in acc if r["arm"] == a]
        line += [cell(ra[0], "arm") if ra else "—"]
        print("| " + " | ".join(line) + " |")
    ref = first.get("reference", "")
    if ref:
        print(f"\nCE start point (one run): {sets[0]} FPR95 {100 * float(ref):.2f} %.")


if __name__ == "__main__":
    main()
