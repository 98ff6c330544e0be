#!/usr/bin/env python3
"""Tables for papers/lipschitz_mnist.md from analysis/experiments/lipschitz_mnist.sh's runs.

Medians with distribution-free 95% confidence intervals from order statistics (the interval
[x_(k), x_(n-k+1)] with k the largest index such that P(Bin(n, 1/2) < k) <= 0.025 covers the
population median with probability >= 95% for any continuous distribution), and for the paired
GReg-minus-energy radius differences the same interval on the differences (sign-test inversion).
Standard library only. Writes papers/data/NAME_*.csv and papers/data/NAME_tables.md, NAME from the
environment (default lipschitz_mnist_uncapped; the RecurJac re-run used lipschitz_mnist_uncapped_recurjac).
"""
import csv, math, os, shutil, sys

NAME = os.environ.get("NAME", "lipschitz_mnist_uncapped")

def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))

def order_ci(n, level=0.95):
    """1-based order-statistic indices (k, n-k+1) of a >= level CI for the median, or None."""
    a = (1 - level) / 2
    k, cdf = 0, 0.0
    for j in range(n + 1):
        p = math.comb(n, j) / 2 ** n
        if cdf + p > a:
            break
        cdf += p
        k = j + 1  # P(Bin < k) = cdf <= a
    if k < 1:
        return None
    return k, n - k + 1

def median_ci(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return float("nan"), None
    med = xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])
    ci = order_ci(n)
    return med, (None if ci is None else (xs[ci[0] - 1], xs[ci[1] - 1]))

def fmt(v):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"

def cell(xs):
    med, ci = median_ci(xs)
    return fmt(med) + ("" if ci is None else f" [{fmt(ci[0])}, {fmt(ci[1])}]")

def col(rows, name):
    return [float(r[name]) for r in rows if r.get(name, "") not in ("", None)]

def main(out):
    runs = {v: read(os.path.join(out, v, "lipschitz.csv")) for v in ("energy", "greg")}
    ver = {}
    for v in runs:
        p = os.path.join(out, v, "verify", "verify_summary.csv")
        ver[v] = read(p) if os.path.exists(p) else []
    data = os.path.join("papers", "data")
    os.makedirs(data, exist_ok=True)
    for v in runs:
        shutil.copyfile(os.path.join(out, v, "lipschitz.csv"), os.path.join(data, f"{NAME}_samples_{v}.csv"))
        shutil.copyfile(os.path.join(out, v, "summary.csv"), os.path.join(data, f"{NAME}_summary_{v}.csv"))
        p = os.path.join(out, v, "verify", "verify_summary.csv")
        if os.path.exists(p):
            shutil.copyfile(p, os.path.join(data, f"{NAME}_verify_{v}.csv"))
    quantities = [
        ("‖∇ₓS(x)‖₂ at the sample", "grad_norm"),
        ("PGD on ‖∇S‖ (lower)", "lower_pgd"),
        ("certified local (best rule)", "upper_local"),
        ("certified global", "upper_global"),
        ("margin |γ − S(x)|", None),
        ("radius at ε (min(ε, m/L(x,ε)))", "radius_at_eps"),
        ("radius, Lipschitz route (uncapped)", "radius_lipschitz"),
        ("radius, bound propagation (uncapped)", "radius_bound_prop"),
    ]
    n = {v: len(r) for v, r in runs.items()}
    lines = [f"| quantity (median [95% CI], n = {n['energy']} / {n['greg']}) | energy loss (λ∇ = 0) | GReg (λ∇ = 1) |", "|---|---|---|"]
    for label, name in quantities:
        vals = {}
        for v, rows in runs.items():
            if name is None:
                vals[v] = [abs(float(r["threshold"]) - float(r["score"])) for r in rows]
            else:
                vals[v] = col(rows, name)
        if not vals["energy"] and not vals["greg"]:
            continue
        lines.append(f"| {label} | {cell(vals['energy'])} | {cell(vals['greg'])} |")
    tight = {v: [float(r["upper_local"]) / float(r["lower_pgd"]) for r in rows if r.get("upper_local") and r.get("lower_pgd")] for v, rows in runs.items()}
    lines.append(f"| tightness best local / PGD | {cell(tight['energy'])} | {cell(tight['greg'])} |")
    # Paired differences (same images, matched by original index).
    e = {r["index"]: r for r in runs["energy"]}
    g = {r["index"]: r for r in runs["greg"]}
    common = [i for i in e if i in g]
    lines.append("")
    lines.append(f"| paired GReg − energy, over {len(common)} images | median [95% CI] | GReg larger / smaller / equal |")
    lines.append("|---|---|---|")
    for label, name in [("radius, Lipschitz route", "radius_lipschitz"), ("radius, bound propagation", "radius_bound_prop"), ("radius at ε", "radius_at_eps")]:
        if not all(e[i].get(name) not in (None, "") and g[i].get(name) not in (None, "") for i in common):
            continue
        d = [float(g[i][name]) - float(e[i][name]) for i in common]
        lines.append(f"| {label} | {cell(d)} | {sum(x > 0 for x in d)} / {sum(x < 0 for x in d)} / {sum(x == 0 for x in d)} |")
    lines.append("")
    for v in ("energy", "greg"):
        for r in ver[v]:
            lines.append(f"verify {v}: " + ", ".join(f"{k}={val}" for k, val in r.items()))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(data, f"{NAME}_tables.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/experiments/lipschitz_mnist")
