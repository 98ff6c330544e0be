#!/usr/bin/env python3
"""PyTorch side of benches/inference.rs: LeNet and MLP 784-256-256-10 inference throughput on
28×28 inputs, batch 1000, f32, CPU, torch.set_num_threads(2), no grad. Prints images/s (median
of 20 timed runs after 3 warm-ups). Run: $PYTHON analysis/bench/inference_torch.py

With `--resnet18 infer|train|greg BATCH REPS`: the side of benches/resnet18.rs instead, ResNet-18 on
3×32×32 uniform inputs, eval-mode inference (images/s), one cross-entropy SGD step in train mode or
one exact GReg step (seconds), median of REPS runs after one warm-up; run it in its own process under
`/usr/bin/time -v` for its peak memory.
"""
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/analysis/", 1)[0] + "/analysis/reference")
from export_pytorch import MLP, LeNet, ResNet18  # noqa: E402  (the same modules the reference uses)

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


def resnet18(mode, batch, reps):
    spec = {"arch": {"kind": "resnet18"}, "input_shape": [3, 32, 32], "num_classes": 10,
            "mean": [0.5] * 3, "std": [0.25] * 3}
    model = ResNet18(spec)
    x = torch.rand(batch, 3, 32, 32)
    times = []
    if mode == "infer":
        model.eval()
        with torch.no_grad():
            for i in range(reps + 1):
                t = time.perf_counter()
                model(x)
                if i > 0:
                    times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(f"resnet18 infer: median {med * 1e3:.1f} ms per batch of {batch}, {batch / med:.0f} images/s ({reps} runs)")
    elif mode == "greg":
        # benches/resnet18.rs greg: half ID, half outliers; CE + 0.1 L_S + the per-sample penalty on
        # every row by double backprop (as analysis/bench/greg_step_torch.py).
        model.train()
        n_in = batch // 2
        y = torch.arange(n_in) % 10
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for i in range(reps + 1):
            t = time.perf_counter()
            xg = x.clone().requires_grad_(True)
            logits = model(xg)
            s = -torch.logsumexp(logits, dim=1)
            ls = F.relu(s[:n_in] - 1e9).pow(2).mean() + F.relu(-1e9 - s[n_in:]).pow(2).mean()
            (g,) = torch.autograd.grad(s.sum(), xg, create_graph=True)
            rows = torch.sqrt(g.flatten(1).pow(2).sum(1) + 1e-12)
            loss = F.cross_entropy(logits[:n_in], y) + 0.1 * ls + rows[:n_in].mean() + rows[n_in:].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i > 0:
                times.append(time.perf_counter() - t)
        print(f"resnet18 greg: median {statistics.median(times):.2f} s per exact GReg step at batch {n_in}+{batch - n_in} ({reps} runs)")
    else:
        model.train()
        y = torch.arange(batch) % 10
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for i in range(reps + 1):
            t = time.perf_counter()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            if i > 0:
                times.append(time.perf_counter() - t)
        print(f"resnet18 train: median {statistics.median(times):.2f} s per CE step at batch {batch} ({reps} runs)")


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--resnet18":
        mode, batch, reps = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        return resnet18(mode, batch, reps)
    torch.manual_seed(0)
    x = torch.rand(BATCH, 1, 28, 28)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    bench("mlp_784_256_256_10", MLP(spec({"kind": "mlp", "hidden": [256, 256]})), x)
    bench("lenet", LeNet(spec({"kind": "lenet"})), x)


if __name__ == "__main__":
    main()
