#!/usr/bin/env python3
"""Turns the `oodcert certify` runs of analysis/experiments/smoothing_mnist.sh into
papers/data/smoothing_mnist_curves.csv (every curves.csv row, with model and σ),
papers/data/smoothing_mnist_summary.csv (per model, σ, certificate: rates at a few radii),
papers/data/smoothing_mnist_tables.md and papers/figures/smoothing_mnist.png.

    python analysis/experiments/smoothing_mnist_report.py RUN_DIR  (default runs/experiments/smoothing_mnist)
Env NAME (default smoothing_mnist) names the output files, e.g. NAME=smoothing_mnist_n100k for the
n = 100 000 runs, so they do not replace the n = 2000 evidence.
Needs numpy and matplotlib only.
"""
import csv
import json
import os
import re
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "runs", "experiments", "smoothing_mnist")
DATA = os.path.join(ROOT, "papers", "data")
FIG = os.path.join(ROOT, "papers", "figures")
NAME = os.environ.get("NAME", "smoothing_mnist")
LABEL = {"energy": "Energy loss (no penalty)", "greg": "GReg (λ_∇=1)"}
RADII = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path, header, rows):
    with open(path + ".tmp", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(path + ".tmp", path)


def at_radius(curve, r, col):
    """The curve's value at the largest grid radius ≤ r (curves are step functions of the radius)."""
    pts = [c for c in curve if float(c["radius"]) <= r + 1e-12]
    return float(pts[-1][col]) if pts else float("nan")


def main():
    runs = []
    for name in sorted(os.listdir(RUN)):
        m = re.fullmatch(r"(energy|greg)-sigma([0-9.]+)", name)
        if m and os.path.exists(os.path.join(RUN, name, "curves.csv")):
            runs.append((m.group(1), float(m.group(2)), os.path.join(RUN, name)))
    runs.sort(key=lambda r: (r[1], r[0]))
    curve_rows, summary_rows, md = [], [], []
    curves = {}
    md.append("| σ | model | γ (clean) | clip [a, b] | ID: certified ID | ID: abstain | OOD: certified OOD | OOD: abstain "
              "| mean radius ID (cert. ID) | mean radius OOD (cert. OOD) | FPR95 base (clean S) | guaranteed FPR95 at r = 0 / 0.25 / 0.5 | guaranteed AUROC at r = 0 / 0.25 / 0.5 |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model, sigma, d in runs:
        man = json.load(open(os.path.join(d, "manifest.json")))
        cal = man["calibration"]
        cert = read_csv(os.path.join(d, "certify.csv"))
        # Every certificate's curve: curves_all.csv (certify writes the detector's alone to curves.csv);
        # runs made before that split have them all in curves.csv.
        every = os.path.join(d, "curves_all.csv")
        rows = read_csv(every if os.path.exists(every) else os.path.join(d, "curves.csv"))
        for r in rows:
            curve_rows.append([model, sigma, r["certificate"], r["radius"], r["certified_id_rate"], r["certified_ood_rate"],
                               r["guaranteed_fpr95"], r["guaranteed_auroc"]])
        for kind in sorted({r["certificate"] for r in rows}):
            c = [r for r in rows if r["certificate"] == kind]
            curves[(model, sigma, kind)] = c
            for rad in RADII:
                summary_rows.append([model, sigma, kind, rad, at_radius(c, rad, "certified_id_rate"),
                                     at_radius(c, rad, "certified_ood_rate"), at_radius(c, rad, "guaranteed_fpr95"),
                                     at_radius(c, rad, "guaranteed_auroc")])
        ids = [r for r in cert if r["is_id"] == "1"]
        oods = [r for r in cert if r["is_id"] == "0"]
        cid = [r for r in ids if r["predict"] == "1"]
        cood = [r for r in oods if r["predict"] == "0"]
        # Base detector FPR95 on this subset (clean scores; threshold at TPR ≥ 95% of these ID samples).
        sid = np.sort([float(r["score"]) for r in ids])
        thr = sid[int(np.ceil(0.95 * len(sid))) - 1]
        fpr_base = np.mean([float(r["score"]) <= thr for r in oods])
        c = curves[(model, sigma, "detector")]
        gfpr = " / ".join("%.1f" % (100 * at_radius(c, r, "guaranteed_fpr95")) for r in (0, 0.25, 0.5))
        gauc = " / ".join("%.1f" % (100 * at_radius(c, r, "guaranteed_auroc")) for r in (0, 0.25, 0.5))
        md.append(
            f"| {sigma} | {LABEL[model]} | {cal['gamma']:.2f} | [{cal['clip']['lo']:.2f}, {cal['clip']['hi']:.2f}] "
            f"| {len(cid)}/{len(ids)} | {sum(r['predict'] == '-1' for r in ids)} "
            f"| {len(cood)}/{len(oods)} | {sum(r['predict'] == '-1' for r in oods)} "
            f"| {np.mean([float(r['radius']) for r in cid]) if cid else float('nan'):.3f} "
            f"| {np.mean([float(r['radius']) for r in cood]) if cood else float('nan'):.3f} "
            f"| {100 * fpr_base:.1f} "
            f"| {gfpr} | {gauc} |")
    os.makedirs(DATA, exist_ok=True)
    os.makedirs(FIG, exist_ok=True)
    write_csv(os.path.join(DATA, f"{NAME}_curves.csv"),
              ["model", "sigma", "certificate", "radius", "certified_id_rate", "certified_ood_rate", "guaranteed_fpr95",
               "guaranteed_auroc"], curve_rows)
    write_csv(os.path.join(DATA, f"{NAME}_summary.csv"),
              ["model", "sigma", "certificate", "radius", "certified_id_rate", "certified_ood_rate", "guaranteed_fpr95",
               "guaranteed_auroc"], summary_rows)
    text = "\n".join(md) + "\n"
    with open(os.path.join(DATA, f"{NAME}_tables.md.tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(DATA, f"{NAME}_tables.md.tmp"), os.path.join(DATA, f"{NAME}_tables.md"))
    print(text)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sigmas = sorted({s for _, s, _ in runs})
    fig, axes = plt.subplots(3, len(sigmas), figsize=(4.2 * len(sigmas), 9.5), squeeze=False)
    colors = {"energy": "tab:red", "greg": "tab:blue"}
    styles = {"detector": "-", "score": "--"}
    for j, s in enumerate(sigmas):
        for (model, sigma, kind), c in curves.items():
            if sigma != s or kind not in styles:
                continue
            x = [float(r["radius"]) for r in c]
            lab = f"{LABEL[model]}, {kind}"
            for i, col in enumerate(["certified_id_rate", "certified_ood_rate", "guaranteed_fpr95"]):
                axes[i][j].step(x, [float(r[col]) for r in c], where="post", color=colors[model], ls=styles[kind],
                                label=lab)
        for i, title in enumerate(["certified ID rate (ID samples)", "certified OOD rate (OOD samples)",
                                   "guaranteed FPR@95 (lower is better)"]):
            axes[i][j].set_title(f"σ = {s}: {title}", fontsize=9)
            axes[i][j].set_xlabel("ℓ2 radius (pixel units)")
            axes[i][j].grid(alpha=0.3)
            axes[i][j].set_ylim(-0.02, 1.02)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Randomized smoothing on MNIST MLP: mnist:test (ID) vs animal-mnist:test (OOD); "
                 "solid = Cohen detector, dashed = clipped smoothed score (CDF bound)", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(FIG, f"{NAME}.png"), dpi=110)
    print(f"wrote {FIG}/{NAME}.png and CSVs under {DATA}", file=sys.stderr)


if __name__ == "__main__":
    main()
