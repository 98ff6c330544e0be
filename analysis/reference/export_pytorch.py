#!/usr/bin/env python3
"""Writes the PyTorch reference files under tests/reference/pytorch/ that tests/model_pytorch.rs
compares oodcert's models against (logits to 1e-5 in f32, eval mode).

Run from the repository root with the reference venv:
    $PYTHON analysis/reference/export_pytorch.py
Needs torch, numpy, safetensors. Deterministic: fixed seeds, CPU only.

Per model NAME it writes
  NAME.safetensors     the state_dict, exported exactly as a user would:
                       safetensors.torch.save_file(model.state_dict(), path)
  NAME_io.safetensors  `input` (a fixed batch in [0,1]), `logits_f32` (model in f32) and
                       `logits_f64` (the same weights upcast to f64), metadata `spec` = the
                       oodcert ModelSpec as JSON.
ResNet-18 has 11.2M weights (45 MB in f32), too big to commit. Its convolution and `fc` weights
are therefore a counter-based hash formula (`formula_weight`, reproduced bit-exactly in the Rust
test) and only the rest (BatchNorm γ, β and running statistics after three train-mode forwards,
the fc bias) is stored, with torchvision-style names (`downsample`, `fc`, `num_batches_tracked`)
to exercise the import aliases; metadata `formula` lists [name, shape, fan_in, index].
"""
import json
import os

import numpy as np
import safetensors
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "reference", "pytorch")
MASK32 = np.uint64(0xFFFFFFFF)


def formula_weight(index, shape, fan_in):
    """U(±1/√fan_in)-shaped deterministic values from a 32-bit integer hash of (index, k)."""
    numel = int(np.prod(shape))
    k = np.arange(numel, dtype=np.uint64) + np.uint64(index) * np.uint64(1_000_003)
    x = (k * np.uint64(2654435761)) & MASK32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(2246822519)) & MASK32
    x ^= x >> np.uint64(13)
    u = x.astype(np.float64) / 2.0**32
    b = 1.0 / np.sqrt(float(fan_in))
    return torch.from_numpy(((2.0 * u - 1.0) * b).astype(np.float32).reshape(shape))


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        c = len(mean)
        # Not registered as buffers: oodcert keeps normalisation in the spec, not the state_dict.
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)

    def forward(self, x):
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class MLP(nn.Module):
    def __init__(self, spec):
        super().__init__()
        c, h, w = spec["input_shape"]
        self.norm = Normalize(spec["mean"], spec["std"])
        widths = [c * h * w] + spec["arch"]["hidden"] + [spec["num_classes"]]
        self.n = len(widths) - 1
        for i in range(self.n):
            setattr(self, f"fc{i + 1}", nn.Linear(widths[i], widths[i + 1]))

    def forward(self, x):
        x = self.norm(x).flatten(1)
        for i in range(self.n):
            x = getattr(self, f"fc{i + 1}")(x)
            if i + 1 < self.n:
                x = F.relu(x)
        return x


class LeNet(nn.Module):
    def __init__(self, spec):
        super().__init__()
        c, h, w = spec["input_shape"]
        self.norm = Normalize(spec["mean"], spec["std"])
        self.conv1 = nn.Conv2d(c, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        h2, w2 = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        self.fc1 = nn.Linear(16 * h2 * w2, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, spec["num_classes"])

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(self.norm(x))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
    """kuangliu/pytorch-cifar BasicBlock, shortcut named `downsample` as in torchvision."""

    def __init__(self, inp, out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.downsample = nn.Sequential()
        if stride != 1 or inp != out:
            self.downsample = nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.downsample(x))


class ResNet18(nn.Module):
    def __init__(self, spec):
        super().__init__()
        c = spec["input_shape"][0]
        self.norm = Normalize(spec["mean"], spec["std"])
        self.conv1 = nn.Conv2d(c, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        width = 64
        for i, (out, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)]):
            blocks = [BasicBlock(width, out, stride), BasicBlock(out, out, 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            width = out
        self.fc = nn.Linear(512, spec["num_classes"])

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(self.norm(x))))
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def write_io(name, spec, model, x):
    model.eval()
    with torch.no_grad():
        l32 = model(x)
        m64 = type(model)(spec)
        m64.load_state_dict(model.state_dict())
        m64 = m64.double().eval()
        l64 = m64(x.double())
    save_file(
        {"input": x.contiguous(), "logits_f32": l32.contiguous(), "logits_f64": l64.contiguous()},
        os.path.join(OUT, f"{name}_io.safetensors"),
        metadata={"spec": json.dumps(spec), "torch": torch.__version__},
    )
    print(f"{name}: logits {tuple(l32.shape)}, |f32 - f64| max {float((l32.double() - l64).abs().max()):.2e}")


def export_plain(name, cls, spec, seed, n=4):
    torch.manual_seed(seed)
    model = cls(spec)
    x = torch.rand(n, *spec["input_shape"])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(OUT, f"{name}.safetensors"))
    write_io(name, spec, model, x)


def export_resnet(name, spec, seed, n=4):
    torch.manual_seed(seed)
    model = ResNet18(spec)
    sd = model.state_dict()
    formula_names = sorted(k for k, v in sd.items() if v.dim() == 4 or k == "fc.weight")
    formula = []
    with torch.no_grad():
        for index, k in enumerate(formula_names):
            shape = list(sd[k].shape)
            fan_in = int(np.prod(shape[1:]))
            sd[k].copy_(formula_weight(index, shape, fan_in))
            formula.append([k, shape, fan_in, index])
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1.0 + 0.1 * torch.randn_like(m.weight))
                m.bias.copy_(0.1 * torch.randn_like(m.bias))
        model.train()
        for _ in range(3):  # non-trivial running statistics
            model(torch.rand(8, *spec["input_shape"]))
    x = torch.rand(n, *spec["input_shape"])
    small = {k: v.contiguous() for k, v in model.state_dict().items() if k not in formula_names}
    save_file(small, os.path.join(OUT, f"{name}.safetensors"), metadata={"formula": json.dumps(formula)})
    write_io(name, spec, model, x)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    cifar = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])
    mlp = {"arch": {"kind": "mlp", "hidden": [16, 12]}, "input_shape": [1, 8, 8], "num_classes": 5,
           "mean": [0.5], "std": [0.25]}
    lenet28 = {"arch": {"kind": "lenet"}, "input_shape": [1, 28, 28], "num_classes": 10,
               "mean": [0.1307], "std": [0.3081]}
    lenet32 = {"arch": {"kind": "lenet"}, "input_shape": [3, 32, 32], "num_classes": 10,
               "mean": cifar[0], "std": cifar[1]}
    resnet = {"arch": {"kind": "resnet18"}, "input_shape": [3, 32, 32], "num_classes": 10,
              "mean": cifar[0], "std": cifar[1]}
    export_plain("mlp", MLP, mlp, 1)
    export_plain("lenet28", LeNet, lenet28, 2)
    export_plain("lenet32", LeNet, lenet32, 3)
    export_resnet("resnet18", resnet, 4)


if __name__ == "__main__":
    main()
