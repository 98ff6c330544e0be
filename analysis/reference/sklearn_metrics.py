#!/usr/bin/env python3
"""Reference values for oodcert's detection metrics (src/metrics/), computed with sklearn.

Writes tests/reference/metrics/cases.json. Run from the repository root:

    $PYTHON analysis/reference/sklearn_metrics.py

Convention: `score` is the energy S (larger = more OOD); `is_id` marks in-distribution samples.
Small cases store their inputs; the two large cases (n = 10^5) store only the parameters of a
SplitMix64-hash workload that src/metrics/synthetic.rs regenerates bit for bit.
Expected floats are written as strings with 17 significant digits ('%.17g'), input scores as
strings of Python's shortest round-trip repr (JSON number parsers may be off by one ulp).
"""

import json
import os
import sys

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from sklearn.metrics import precision_recall_curve

TPR_LEVELS = [0.5, 0.65, 0.8, 0.9, 0.95, 0.99, 1.0]
MASK64 = (1 << 64) - 1
CURVE_MAX_N = 600  # store ROC/PR curves only for cases up to this size (keeps the file small)
OUT = os.path.join("tests", "reference", "metrics", "cases.json")


def g17(x):
    return "%.17g" % float(x)


# --- the hash workload (mirror of src/metrics/synthetic.rs) ---------------------------------

def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def hashed_sample(i, levels):
    h = splitmix64(i)
    is_id = h % 4 != 0
    bits = h >> 11
    if levels is None:
        score = float(bits) * 2.0**-53 + (0.0 if is_id else 0.5)
    else:
        levels = max(levels, 1)
        score = float(bits % levels + (0 if is_id else levels // 4))
    return score, is_id


def hashed_scores(n, levels):
    pairs = [hashed_sample(i, levels) for i in range(n)]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


# --- the three FPR@TPR conventions ---------------------------------------------------------

def fpr_first(scores, is_id, t):
    """ID positive, score -S: FPR at the first ROC threshold (all distinct values) with TPR >= t."""
    fpr, tpr, _ = roc_curve(is_id.astype(int), -scores, drop_intermediate=False)
    return fpr[np.argmax(tpr >= t)]


def fpr_ood_positive(scores, is_id, t):
    """OpenOOD: OOD positive, score S, sklearn's default roc_curve (drop_intermediate=True)."""
    fpr, tpr, _ = roc_curve((~is_id).astype(int), scores)
    return fpr[np.argmax(tpr >= t)]


def fpr_nearest(scores, is_id, t):
    """Re-implementation of the energy-OOD/GReg `fpr_and_fdr_at_recall` (ID positive, -S).

    Sort by -S descending; one point per distinct value; keep points up to the first with full
    recall, reverse them, append (recall 1, fps 0); take the first argmin of |recall - t|.
    """
    y = is_id.astype(bool)
    s = -scores
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    ends = np.r_[np.where(np.diff(s))[0], y.size - 1]
    tps = np.cumsum(y, dtype=np.float64)[ends]
    fps = 1 + ends - tps
    recall = tps / tps[-1]
    last = tps.searchsorted(tps[-1])
    rev = slice(last, None, -1)
    recall = np.r_[recall[rev], 1]
    fps = np.r_[fps[rev], 0]
    cut = np.argmin(np.abs(recall - t))
    return fps[cut] / np.sum(~y)


def threshold_first(scores, is_id, t):
    """gamma on S such that S <= gamma accepts >= t of ID: the ROC threshold of fpr_first."""
    _, tpr, thr = roc_curve(is_id.astype(int), -scores, drop_intermediate=False)
    return -thr[np.argmax(tpr >= t)]


def detection_error(scores, is_id):
    fpr, tpr, _ = roc_curve(is_id.astype(int), -scores, drop_intermediate=False)
    return np.min(0.5 * (1 - tpr) + 0.5 * fpr)


def expected(scores, is_id, with_curves):
    y_id = is_id.astype(int)
    out = {
        "n_id": int(is_id.sum()),
        "n_ood": int((~is_id).sum()),
        "auroc": g17(roc_auc_score(y_id, -scores)),
        "aupr_in": g17(average_precision_score(y_id, -scores)),
        "aupr_out": g17(average_precision_score(1 - y_id, scores)),
        "detection_error": g17(detection_error(scores, is_id)),
        "tpr_levels": [g17(t) for t in TPR_LEVELS],
        "fpr_first": [g17(fpr_first(scores, is_id, t)) for t in TPR_LEVELS],
        "fpr_nearest": [g17(fpr_nearest(scores, is_id, t)) for t in TPR_LEVELS],
        "fpr_ood_positive": [g17(fpr_ood_positive(scores, is_id, t)) for t in TPR_LEVELS],
        "threshold_at_tpr": [g17(threshold_first(scores, is_id, t)) for t in TPR_LEVELS],
    }
    if with_curves:
        fpr, tpr, thr = roc_curve(y_id, -scores, drop_intermediate=False)
        out["roc"] = {"threshold": [g17(-x) for x in thr], "fpr": [g17(x) for x in fpr],
                      "tpr": [g17(x) for x in tpr]}
        p, r, thr = precision_recall_curve(y_id, -scores)
        out["pr_in"] = {"threshold": [g17(-x) for x in thr[::-1]],
                        "precision": [g17(x) for x in p[:-1][::-1]],
                        "recall": [g17(x) for x in r[:-1][::-1]]}
        p, r, thr = precision_recall_curve(1 - y_id, scores)
        out["pr_out"] = {"threshold": [g17(x) for x in thr[::-1]],
                         "precision": [g17(x) for x in p[:-1][::-1]],
                         "recall": [g17(x) for x in r[:-1][::-1]]}
    return out


def small_cases():
    rng = np.random.default_rng(20240611)
    cases = []

    def add(name, id_scores, ood_scores):
        s = np.array(list(id_scores) + list(ood_scores), dtype=np.float64)
        y = np.array([True] * len(id_scores) + [False] * len(ood_scores))
        perm = rng.permutation(len(s))  # interleave, so the order of the input is not a hint
        cases.append((name, s[perm], y[perm]))

    add("random_continuous", rng.normal(-8.0, 1.5, 200), rng.normal(-6.0, 2.0, 150))
    add("heavy_ties_integers", rng.integers(0, 8, 300).astype(float),
        rng.integers(3, 12, 240).astype(float))
    add("all_tied", [2.5] * 5, [2.5] * 7)
    add("perfectly_separated", rng.uniform(-10, -5, 40), rng.uniform(-4, 0, 30))
    add("reversed", rng.uniform(0, 4, 25), rng.uniform(-10, -5, 35))
    add("tiny_n2", [-1.0], [1.0])
    add("tiny_n2_tied", [0.0], [0.0])
    add("imbalanced_many_id", rng.normal(0.0, 1.0, 1000), rng.normal(1.0, 1.0, 10))
    add("imbalanced_many_ood", rng.normal(0.0, 1.0, 10), rng.normal(1.0, 1.0, 1000))
    # 20 ID: recall steps of 0.05; the float tie |0.9-0.95| vs |1-0.95| separates the rules.
    add("recall_steps_n20", [float(k) for k in range(20)], [17.5, 18.5, 19.0, 19.5, 3.0, 30.0])
    # signed zeros tie with each other; tie groups with equal (OOD, ID) increments are
    # collinear ROC points that sklearn's default roc_curve drops (OpenOOD convention).
    add("signed_zeros_and_collinear_ties", [-0.0, 0.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        [0.0, -0.0, 1.0, 2.0, 3.0, 3.0, 4.0, 8.0, 9.0, 10.0])
    return cases


def main():
    cases = []
    for name, s, y in small_cases():
        case = {"name": name, "scores": [repr(float(x)) for x in s], "is_id": [int(b) for b in y]}
        case.update(expected(s, y, with_curves=len(s) <= CURVE_MAX_N))
        cases.append(case)
        print(f"{name}: n={len(s)} auroc={case['auroc']}", file=sys.stderr)
    for name, levels in [("hashed_continuous_1e5", None), ("hashed_ties_1e5", 50)]:
        n = 100_000
        s, y = hashed_scores(n, levels)
        case = {"name": name, "hashed": {"n": n, "levels": levels}}
        case.update(expected(s, y, with_curves=False))
        cases.append(case)
        print(f"{name}: n={n} auroc={case['auroc']}", file=sys.stderr)
    doc = {
        "generator": "analysis/reference/sklearn_metrics.py",
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "convention": "score = energy S (larger = more OOD); default ID positive, detector score -S",
        "cases": cases,
    }
    tmp = OUT + ".tmp"
    with open(tmp, "w") as f:  # one case per line: compact, yet diffs stay readable
        head = {k: v for k, v in doc.items() if k != "cases"}
        f.write(json.dumps(head)[:-1] + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, separators=(",", ":")) for c in cases))
        f.write("\n]}\n")
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({len(cases)} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
