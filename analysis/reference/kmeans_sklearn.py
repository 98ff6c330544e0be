#!/usr/bin/env python3
"""Reference values for oodcert's k-means (tests/samplers_reference.rs) from scikit-learn.

Writes tests/reference/samplers/kmeans_sklearn.json: float32 data (stored exactly), fixed initial
centroids, and scikit-learn's KMeans(algorithm="lloyd") results on the data widened to float64:
  - "lloyd": from the given init (n_init=1): labels, centroids, inertia, n_iter — our `lloyd`
    must match them (same algorithm, same stopping rule);
  - "best_inertia": the lowest inertia over n_init=10 k-means++ restarts, which every one of
    several random_states reaches (so it is the optimum our seeded `kmeans` should also reach).

Run: $PYTHON analysis/reference/kmeans_sklearn.py  (numpy, scikit-learn)
"""

import json
import os
import sys

import numpy as np
import sklearn
from sklearn.cluster import KMeans


def blobs(rng, n, d, k, spread):
    centres = rng.uniform(-4.0, 4.0, size=(k, d))
    labels = rng.integers(0, k, size=n)
    x = centres[labels] + rng.normal(0.0, spread, size=(n, d))
    return x.astype(np.float32)


def case(name, x, k, seed):
    rng = np.random.default_rng(seed)
    x64 = x.astype(np.float64)
    init = x64[rng.choice(len(x), size=k, replace=False)]
    km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=300, tol=1e-4, algorithm="lloyd").fit(x64)
    bests = [
        KMeans(n_clusters=k, n_init=10, max_iter=300, tol=1e-4, random_state=rs).fit(x64).inertia_
        for rs in range(5)
    ]
    spread = (max(bests) - min(bests)) / min(bests)
    if spread > 1e-9:
        sys.exit(f"{name}: restarts disagree on the optimum ({bests}); pick other data")
    return {
        "name": name,
        "n": int(x.shape[0]),
        "d": int(x.shape[1]),
        "k": int(k),
        "features": [float(v) for v in x.ravel()],
        "init": [float(v) for v in init.ravel()],
        "lloyd": {
            "labels": [int(v) for v in km.labels_],
            "centroids": [float(v) for v in km.cluster_centers_.ravel()],
            "inertia": float(km.inertia_),
            "n_iter": int(km.n_iter_),
        },
        "best_inertia": float(min(bests)),
    }


def main():
    rng = np.random.default_rng(20240417)
    cases = [
        case("blobs-300x5-k6", blobs(rng, 300, 5, 6, 0.9), 6, 1),
        case("blobs-240x12-k4", blobs(rng, 240, 12, 4, 1.5), 4, 2),
    ]
    out = {
        "generator": "analysis/reference/kmeans_sklearn.py",
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "cases": cases,
    }
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "tests", "reference", "samplers", "kmeans_sklearn.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, path)
    for c in cases:
        print(f"{c['name']}: lloyd inertia {c['lloyd']['inertia']:.6f} n_iter {c['lloyd']['n_iter']}, "
              f"best inertia {c['best_inertia']:.6f}", file=sys.stderr)


if __name__ == "__main__":
    main()
