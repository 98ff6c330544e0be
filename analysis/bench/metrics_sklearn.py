#!/usr/bin/env python3
"""Times sklearn on the workload of benches/metrics.rs: 10^6 energy scores from the SplitMix64
hash workload (src/metrics/synthetic.rs), computing what oodcert's `detection_metrics` computes:
FPR@95 (roc_curve), AUROC, AUPR-In, AUPR-Out and the detection error.

    $PYTHON analysis/bench/metrics_sklearn.py

Prints one line per workload: best and median wall time of 10 repetitions (input generation
excluded), and the metric values (to compare with the Rust results).
"""

import statistics
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

N = 1_000_000
REPS = 10


def hashed_scores(n, levels):
    """Vectorised mirror of src/metrics/synthetic.rs (uint64 arithmetic wraps mod 2^64)."""
    with np.errstate(over="ignore"):
        z = np.arange(n, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h = z ^ (z >> np.uint64(31))
    is_id = (h % np.uint64(4)) != 0
    bits = h >> np.uint64(11)
    if levels is None:
        scores = bits.astype(np.float64) * 2.0**-53 + np.where(is_id, 0.0, 0.5)
    else:
        scores = ((bits % np.uint64(levels)) + np.where(is_id, 0, levels // 4).astype(np.uint64))
        scores = scores.astype(np.float64)
    return scores, is_id


def all_metrics(scores, is_id):
    y = is_id.astype(int)
    fpr, tpr, _ = roc_curve(y, -scores, drop_intermediate=False)
    return {
        "fpr95": fpr[np.argmax(tpr >= 0.95)],
        "auroc": roc_auc_score(y, -scores),
        "aupr_in": average_precision_score(y, -scores),
        "aupr_out": average_precision_score(1 - y, scores),
        "detection_error": np.min(0.5 * (1 - tpr) + 0.5 * fpr),
    }


def main():
    for name, levels in [("continuous", None), ("ties_1000_levels", 1000)]:
        scores, is_id = hashed_scores(N, levels)
        times = []
        for _ in range(REPS):
            t0 = time.perf_counter()
            m = all_metrics(scores, is_id)
            times.append(time.perf_counter() - t0)
        vals = " ".join(f"{k}={v:.17g}" for k, v in m.items())
        print(f"sklearn {name} n={N}: best {min(times) * 1e3:.1f} ms, "
              f"median {statistics.median(times) * 1e3:.1f} ms; {vals}")


if __name__ == "__main__":
    main()
