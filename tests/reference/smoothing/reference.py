"""Reference values for tests/smoothing_bounds.rs (run with the pyref venv; CI reads the CSV).

Writes tests/reference/smoothing/reference.csv: for each (k, n, alpha) the one-sided Clopper-Pearson
lower/upper bounds (scipy.stats.beta.ppf) and the two-sided binomial test p-value against 1/2
(scipy.stats.binomtest).
"""
import csv
import os

from scipy.stats import beta, binomtest

CASES = [
    (0, 1), (1, 1), (0, 10), (3, 10), (5, 10), (10, 10), (1, 100), (50, 100), (51, 100),
    (60, 100), (99, 100), (100, 100), (480, 1000), (512, 1000), (990, 1000), (1000, 1000),
    (5001, 10000), (9000, 10000), (10000, 10000), (3, 100000), (50500, 100000),
    (99990, 100000), (100000, 100000),
]
ALPHAS = [0.5, 0.05, 0.001, 1e-6]

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference.csv")
with open(out, "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["k", "n", "alpha", "cp_lower", "cp_upper", "binom_p_value"])
    for k, n in CASES:
        p = binomtest(k, n, 0.5).pvalue
        for a in ALPHAS:
            lo = 0.0 if k == 0 else beta.ppf(a, k, n - k + 1)
            hi = 1.0 if k == n else beta.ppf(1 - a, k + 1, n - k)
            w.writerow([k, n, repr(a), repr(float(lo)), repr(float(hi)), repr(float(p))])
print("wrote", out)
