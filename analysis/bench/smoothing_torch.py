#!/usr/bin/env python3
"""PyTorch side of analysis/bench/smoothing.sh: the Monte Carlo loop of randomized-smoothing
certification done the way a PyTorch user would (Cohen et al. 2019's CERTIFY loop), on the same
oodcert weights (MLP, LeNet or ResNet-18) and the same images, to set beside `oodcert certify`'s
noisy passes per second.

    python analysis/bench/smoothing_torch.py MODEL.safetensors --limit K --n0 N0 --n N --sigma S \
        --gamma G --batch B [--threads 2] [--check certify.csv]

Per image: n0 + n noisy copies x + σ·z (z ~ N(0, I) from torch.randn, f32), in batches of B:
forward pass, energy S = -logsumexp(logits), count S ≤ γ (decision "ID"), and the clipped
score h = (clip(S, a, b) - a)/(b - a) summed (the score certificate's Monte Carlo mean), no grad,
torch.set_num_threads(threads). Images: the first K of MNIST t10k ($OODCERT_DATA/mnist, else
data/mnist; IDX), in [0,1]; with `--images FILE.npy`, the first K of a uint8 `(n, c, h, w)` NPY file
divided by 255 (oodcert's `--data path:FILE.npy`, e.g. the 3×32×32 set a ResNet-18 reads). Prints one JSON line: passes, seconds, passes_per_s, per-image counts;
with --check it first compares the images' indices and clean energies with the `idx` and `score`
columns of oodcert's certify.csv (run with `--subset first`) and exits 1 before timing anything
when they differ (other images or other weights: the comparison would be meaningless).
"""
import argparse
import csv
import json
import os
import sys
import time

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "analysis", "reference"))
from export_pytorch import MLP, LeNet, ResNet18  # noqa: E402  (the modules whose names src/model/pytorch.rs maps)

# Largest |clean energy difference| accepted between the two sides (f32 forward passes agree to
# ~1e-5; other images or weights differ by ~0.1 or more).
CHECK_TOL = 1e-3


def mnist_test(k):
    data = os.environ.get("OODCERT_DATA") or os.path.join(ROOT, "data")
    with open(os.path.join(data, "mnist", "t10k-images.idx3-ubyte"), "rb") as f:
        b = f.read()
    n, h, w = (int.from_bytes(b[i:i + 4], "big") for i in (4, 8, 12))
    x = np.frombuffer(b, dtype=np.uint8, offset=16, count=n * h * w).reshape(n, 1, h, w)
    return torch.from_numpy(x[:k].astype(np.float32) / 255.0)


def npy_images(path, k):
    x = np.load(path, mmap_mode="r")
    if x.dtype != np.uint8 or x.ndim != 4:
        sys.exit(f"--images {path}: expected uint8 (n, c, h, w), got {x.dtype} {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x[:k]).astype(np.float32) / 255.0)


def pytorch_state(sd, kind):
    """oodcert's names → the PyTorch modules' (src/model/pytorch.rs maps the other way)."""
    if kind != "resnet18":
        return sd
    out = {}
    for k, v in sd.items():
        if k.startswith("linear."):
            k = "fc." + k[len("linear."):]
        out[k.replace(".shortcut.", ".downsample.")] = v
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--limit", type=int, required=True)
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--sigma", type=float, required=True)
    p.add_argument("--gamma", type=float, required=True)
    p.add_argument("--clip", default="-30,-15")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check", help="oodcert certify.csv to compare clean energies with")
    p.add_argument("--images", help="uint8 (n, c, h, w) NPY file instead of MNIST t10k")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with safe_open(a.model, "pt") as f:
        spec = json.loads(f.metadata()["oodcert.spec"])
    kinds = {"mlp": MLP, "lenet": LeNet, "resnet18": ResNet18}
    kind = spec["arch"]["kind"]
    if kind not in kinds:
        sys.exit(f"{a.model}: this benchmark covers the MLP, LeNet and ResNet-18, got {kind}")
    model = kinds[kind](spec)
    missing, unexpected = model.load_state_dict(pytorch_state(load_file(a.model), kind), strict=False)
    # (PyTorch's BatchNorm counts its batches; oodcert keeps no such counter.)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"{a.model}: missing {missing}, unexpected {unexpected}")
    model.eval()
    lo, hi = (float(v) for v in a.clip.split(","))
    x = npy_images(a.images, a.limit) if a.images else mnist_test(a.limit)
    if tuple(x.shape[1:]) != tuple(spec["input_shape"]):
        sys.exit(f"images {tuple(x.shape[1:])} do not fit the model's input {spec['input_shape']}")
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch}
    with torch.no_grad():
        clean = -torch.logsumexp(model(x), dim=1)
        if a.check:
            rows = [r for r in csv.DictReader(open(a.check)) if r["is_id"] == "1"]
            idx = [int(r["idx"]) for r in rows]
            if idx != list(range(a.limit)):
                sys.exit(f"--check {a.check}: oodcert certified images {idx}, not the first {a.limit} "
                         "(run oodcert certify with --subset first)")
            ours = np.array([float(r["score"]) for r in rows])
            diff = float(np.max(np.abs(clean.numpy() - ours)))
            out["max_abs_diff_clean_energy_vs_oodcert"] = diff
            if not diff <= CHECK_TOL:
                sys.exit(f"--check {a.check}: clean energies differ from oodcert's by {diff} > {CHECK_TOL} "
                         "(other weights or images?)")
        counts0, counts, hsum = [], [], []
        t = time.perf_counter()
        for i in range(a.limit):
            xi = x[i:i + 1]
            for total, sink in ((a.n0, counts0), (a.n, counts)):
                c, hs, done = 0, 0.0, 0
                while done < total:
                    m = min(a.batch, total - done)
                    noisy = xi + a.sigma * torch.randn((m,) + tuple(xi.shape[1:]))
                    s = -torch.logsumexp(model(noisy), dim=1)
                    c += int((s <= a.gamma).sum())
                    hs += float(((s.clamp(lo, hi) - lo) / (hi - lo)).sum())
                    done += m
                sink.append(c)
            hsum.append(hs / a.n)
        secs = time.perf_counter() - t
    passes = a.limit * (a.n0 + a.n)
    out.update(passes=passes, seconds=secs, passes_per_s=passes / secs, counts_n0=counts0, counts_n=counts,
               mean_h=hsum)
    print(json.dumps(out))
    print(f"Monte Carlo {secs:.3f}s, {passes / secs:.0f} passes/s (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads); clean-energy max |diff| vs oodcert "
          f"{out.get('max_abs_diff_clean_energy_vs_oodcert')}; counts n: {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
