#!/usr/bin/env python3
"""Turns the runs of analysis/experiments/greg_mnist.sh into the CSVs, tables and figure of
papers/greg_mnist.md.

    python analysis/experiments/greg_mnist_report.py RUN_DIR   (default runs/experiments/greg_mnist)

Reads, per run folder RUN_DIR/{ce,VARIANT-sSEED}: eval/metrics.csv (`oodcert eval`; for dos-sSEED also
eval-absent/metrics.csv, DOS's absent-class score, reported as the variant "dosabs"),
grad/SET/summary.csv (`oodcert lipschitz --methods sample`: mean ‖∇ₓS‖₂ at the clean test points)
and train_log.csv (`oodcert train`). Writes
  papers/data/greg_mnist_metrics.csv     one row per (variant, seed, OOD set): fpr95, auroc, aupr_in, id_accuracy
  papers/data/greg_mnist_gradnorm.csv    one row per (variant, seed, test set): n, mean ‖∇ₓS‖₂ (eval mode)
  papers/data/greg_mnist_train_curves.csv  train_log grad_norm_in / grad_norm_aux / loss terms per logged step
  papers/data/greg_mnist_tables.md       the tables of papers/greg_mnist.md (mean ± sample std over seeds)
  papers/figures/greg_mnist_gradnorm.png ‖∇ₓS‖₂ over training, mean over seeds (the paper's Figure 3 analogue)
Needs numpy and matplotlib only.
"""
import csv
import os
import re
import sys

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "runs", "experiments", "greg_mnist")
DATA = os.path.join(ROOT, "papers", "data")
FIG = os.path.join(ROOT, "papers", "figures")
ORDER = ["ce", "energy", "greg", "gregplus", "gregplus2way", "dos", "dosabs"]
LABEL = {
    "ce": "CE pre-trained (start point)",
    "energy": "Energy loss (λ_∇=0)",
    "greg": "GReg (λ_∇=1, random aux)",
    "gregplus": "GReg+ (λ_∇=1, greg-plus sampler)",
    "gregplus2way": "GReg+ two-way",
    "dos": "DOS (β=1, dos sampler), energy of the K ID logits",
    "dosabs": "DOS, its absent-class score",
}
# Rows read from another eval folder of the same runs (DOS's own score); no gradient/training rows.
EVAL_DIR = {"dosabs": "eval-absent"}
OOD_SHORT = {"animal-mnist": "animal", "textures": "textures", "lfw": "lfw", "digits8": "digits8",
             "noise-gauss": "n-gauss", "noise-uniform": "n-unif"}


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path, header, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def runs():
    out = []
    for name in sorted(os.listdir(RUN)):
        m = re.fullmatch(r"([a-z0-9]+)-s(\d+)", name)
        if name == "ce":
            out.append(("ce", 0, os.path.join(RUN, name)))
        elif m and m.group(1) in ORDER:
            out.append((m.group(1), int(m.group(2)), os.path.join(RUN, name)))
            if m.group(1) == "dos":
                out.append(("dosabs", int(m.group(2)), os.path.join(RUN, name)))
    out.sort(key=lambda r: (ORDER.index(r[0]), r[1]))
    return out


def ms(v, scale=1.0, fmt="{:.2f}"):
    v = np.asarray(v, dtype=float) * scale
    if len(v) == 1:
        return fmt.format(v[0])
    return (fmt + " ± " + fmt).format(v.mean(), v.std(ddof=1))


def main():
    os.makedirs(DATA, exist_ok=True)
    os.makedirs(FIG, exist_ok=True)
    metric_rows, grad_rows, curve_rows = [], [], []
    for variant, seed, d in runs():
        ev = os.path.join(d, EVAL_DIR.get(variant, "eval"), "metrics.csv")
        if not os.path.exists(ev):
            print(f"skipping {d}: no {os.path.relpath(ev, d)}", file=sys.stderr)
            continue
        for r in read_csv(ev):
            ood = r["ood"].split(":")[0]
            metric_rows.append([variant, seed, ood, r["fpr95"], r["auroc"], r["aupr_in"], r["id_accuracy"]])
        if variant in EVAL_DIR:
            continue
        gdir = os.path.join(d, "grad")
        for s in sorted(os.listdir(gdir)) if os.path.isdir(gdir) else []:
            for r in read_csv(os.path.join(gdir, s, "summary.csv")):
                if r["quantity"] == "grad_norm":
                    grad_rows.append([variant, seed, s, r["n"], r["mean"], r["median"]])
        for r in read_csv(os.path.join(d, "train_log.csv")):
            curve_rows.append([variant, seed, r["step"], r["grad_norm_in"], r["grad_norm_aux"], r["loss"], r["ce"],
                               r["loss_energy"], r["loss_grad"], r["acc"]])
    write_csv(os.path.join(DATA, "greg_mnist_metrics.csv"),
              ["variant", "seed", "ood", "fpr95", "auroc", "aupr_in", "id_accuracy"], metric_rows)
    write_csv(os.path.join(DATA, "greg_mnist_gradnorm.csv"),
              ["variant", "seed", "set", "n", "mean_grad_norm_l2", "median_grad_norm_l2"], grad_rows)
    write_csv(os.path.join(DATA, "greg_mnist_train_curves.csv"),
              ["variant", "seed", "step", "grad_norm_in", "grad_norm_aux", "loss", "ce", "loss_energy", "loss_grad",
               "acc"], curve_rows)

    variants = [v for v in ORDER if any(r[0] == v for r in metric_rows)]
    oods = list(dict.fromkeys(r[2] for r in metric_rows))
    seeds = {v: sorted({r[1] for r in metric_rows if r[0] == v}) for v in variants}

    def per_seed(v, ood, col):
        return [float(r[col]) for r in metric_rows if r[0] == v and r[2] == ood]

    def mean_over_oods(v, col):
        return [np.mean([float(r[col]) for r in metric_rows if r[0] == v and r[1] == s]) for s in seeds[v]]

    md = []
    for col, name in [(3, "FPR95 % ↓"), (4, "AUROC % ↑"), (5, "AUPR-In % ↑")]:
        md.append(f"**{name}** (mean ± std over seeds; each seed's mean over the six OOD sets in the last column)\n")
        md.append("| model | seeds | " + " | ".join(OOD_SHORT.get(o, o) for o in oods) + " | mean |")
        md.append("|---|---|" + "---|" * (len(oods) + 1))
        for v in variants:
            cells = [ms(per_seed(v, o, col), 100) for o in oods] + [ms(mean_over_oods(v, col), 100)]
            md.append(f"| {LABEL[v]} | {len(seeds[v])} | " + " | ".join(cells) + " |")
        md.append("")

    def gsel(v, pred):
        out = []
        for s in seeds[v]:
            vals = [float(r[4]) for r in grad_rows if r[0] == v and r[1] == s and pred(r[2])]
            if vals:
                out.append(np.mean(vals))
        return out

    def last_train(v, col, k=5):
        """Mean of the last k logged steps (the last 50 of 600 steps), per seed."""
        out = []
        for s in seeds[v]:
            vals = [float(r[col]) for r in curve_rows if r[0] == v and r[1] == s]
            out.append(np.mean(vals[-k:]))
        return out

    md.append("**ID accuracy and gradient norms** (mean ± std over seeds)\n")
    md.append("| model | ID acc % | eval ‖∇ₓS‖₂ ID (mnist:test) | eval ‖∇ₓS‖₂ OOD (mean of 6 sets) | "
              + " | ".join(f"eval OOD {OOD_SHORT.get(o, o)}" for o in oods)
              + " | train grad_norm_in (last 50 steps) | train grad_norm_aux (last 50 steps) |")
    md.append("|---|---|---|---|" + "---|" * len(oods) + "---|---|")
    for v in (v for v in variants if v not in EVAL_DIR):
        acc = [float(r[6]) for r in metric_rows if r[0] == v and r[2] == oods[0]]
        cells = [ms(acc, 100), ms(gsel(v, lambda s: s == "mnist"), fmt="{:.3f}"),
                 ms(gsel(v, lambda s: s != "mnist"), fmt="{:.3f}")]
        cells += [ms(gsel(v, lambda s, o=o: s == o), fmt="{:.3f}") for o in oods]
        cells += [ms(last_train(v, 3), fmt="{:.3f}"), ms(last_train(v, 4), fmt="{:.3f}")]
        md.append(f"| {LABEL[v]} | " + " | ".join(cells) + " |")
    md.append("")
    text = "\n".join(md) + "\n"
    with open(os.path.join(DATA, "greg_mnist_tables.md.tmp"), "w") as f:
        f.write(text)
    os.replace(os.path.join(DATA, "greg_mnist_tables.md.tmp"), os.path.join(DATA, "greg_mnist_tables.md"))
    print(text)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    colors = {"energy": "tab:red", "greg": "tab:blue", "gregplus": "tab:green", "gregplus2way": "tab:purple",
              "dos": "tab:orange"}
    for ax, col, title in [(axes[0], 3, "ID training batch: grad_norm_in"),
                           (axes[1], 4, "auxiliary (selected) batch: grad_norm_aux")]:
        for v in variants:
            if v == "ce" or v in EVAL_DIR:
                continue
            curves = []
            for s in seeds[v]:
                rows = [r for r in curve_rows if r[0] == v and r[1] == s]
                curves.append(([int(r[2]) for r in rows], [float(r[col]) for r in rows]))
            n = min(len(c[0]) for c in curves)
            steps = np.array(curves[0][0][:n])
            y = np.array([c[1][:n] for c in curves])
            ax.plot(steps, y.mean(0), color=colors.get(v), label=f"{LABEL[v]} (n={len(curves)} seeds)")
            if len(curves) > 1:
                ax.fill_between(steps, y.min(0), y.max(0), color=colors.get(v), alpha=0.15, lw=0)
        ce = [float(r[3]) for r in curve_rows if r[0] == "ce"]
        if col == 3 and ce:
            ax.axhline(np.mean(ce[-5:]), color="gray", ls=":", label="CE checkpoint (last 50 pre-training steps)")
        ax.set_title(title)
        ax.set_xlabel("fine-tuning step")
        ax.set_ylabel("mean ‖∇ₓS(x)‖₂ over the batch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("MNIST MLP fine-tuned from one CE checkpoint: mean over seeds, band = min..max over seeds")
    fig.tight_layout()
    fig.savefig(os.path.join(FIG, "greg_mnist_gradnorm.png"), dpi=120)
    print(f"wrote {FIG}/greg_mnist_gradnorm.png and CSVs under {DATA}", file=sys.stderr)


if __name__ == "__main__":
    main()
