"""One exact GReg step in PyTorch, the reference for benches/greg_step.rs: 64 ID + 64 aux 28x28
images, CE + 0.1*energy margins + the per-sample gradient penalty by double backprop
(torch.autograd.grad(create_graph=True)), SGD update. Prints the median step time in ms."""
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
torch.manual_seed(0)


class Norm(nn.Module):
    def forward(self, x):
        return (x - 0.1307) / 0.3081


def mlp():
    return nn.Sequential(Norm(), nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def lenet():
    return nn.Sequential(
        Norm(), nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def step(model, opt, x, y, grad):
    x = x.clone().requires_grad_(grad)
    logits = model(x)
    ce = F.cross_entropy(logits[:64], y)
    s = -torch.logsumexp(logits, dim=1)
    ls = F.relu(s[:64] + 25).pow(2).mean() + F.relu(-7 - s[64:]).pow(2).mean()
    loss = ce + 0.1 * ls
    if grad:
        (g,) = torch.autograd.grad(s.sum(), x, create_graph=True)
        rows = torch.sqrt(g.flatten(1).pow(2).sum(1) + 1e-12)
        loss = loss + rows[:64].mean() + rows[64:].mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


x = torch.rand(128, 1, 28, 28)
y = torch.arange(64) % 10
for name, make in [("mlp", mlp), ("lenet", lenet)]:
    model = make().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for grad in (False, True):
        for _ in range(3):
            step(model, opt, x, y, grad)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            step(model, opt, x, y, grad)
            times.append(time.perf_counter() - t)
        label = "exact GReg (double backprop)" if grad else "plain (CE + energy)"
        print(f"pytorch greg_step_{name}/{label}: median {1e3 * statistics.median(times):.2f} ms")
