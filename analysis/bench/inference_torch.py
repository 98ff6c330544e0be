#!/usr/bin/env python3
"""PyTorch side of benches/inference.rs: LeNet and MLP 784-256-256-10 inference throughput on
28×28 inputs, batch 1000, f32, CPU, torch.set_num_threads(2), no grad. Prints images/s (median
of 20 timed runs after 3 warm-ups). Run: $PYTHON analysis/bench/inference_torch.py
"""
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/analysis/", 1)[0] + "/analysis/reference")
from export_pytorch import MLP, LeNet  # noqa: E402  (the same modules the reference uses)

BATCH = 1000


def spec(arch):
    return {"arch": arch, "input_shape": [1, 28, 28], "num_classes": 10, "mean": [0.1307], "std": [0.3081]}


def bench(name, model, x, runs=20):
    model.eval()
    with torch.no_grad():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(f"{name}: median {med * 1e3:.2f} ms per batch of {BATCH}, {BATCH / med:,.0f} images/s")


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.rand(BATCH, 1, 28, 28)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    bench("mlp_784_256_256_10", MLP(spec({"kind": "mlp", "hidden": [256, 256]})), x)
    bench("lenet", LeNet(spec({"kind": "lenet"})), x)


if __name__ == "__main__":
    main()
