#!/usr/bin/env python3
"""Writes the ONNX fixtures of tests/onnx_import.rs (tests/fixtures/onnx/) and, with --big DIR,
the CIFAR WRN-40-2 and DenseNet-BC of BENCHMARKS.md (not committed: several MB each).

Run from the repository root:  python3 analysis/onnx/export_fixtures.py [--big DIR]
Needs torch, numpy, onnx and onnxruntime (pip install onnx onnxruntime). Deterministic: fixed
seeds, CPU, float32, opset 17, torch.onnx.export's TorchScript exporter (dynamo=False).

Per fixture NAME it writes NAME.onnx and, for the models that import, NAME_io.json:
  input          a fixed batch in [0,1], shape `shape`
  logits_ort     onnxruntime's logits for it (what the Rust test compares to, 1e-5 relative)
  logits_torch   PyTorch's logits (for reference)
Fixtures:
  cnn            the issue's "Done when" net, none of the built-ins: in-graph normalisation
                 (Sub, Div), conv + BatchNorm, a residual Add, max-pool, a channel Concat with an
                 identity branch, global average pooling, Gemm
  mlp, lenet28   oodcert's built-in MLP and LeNet with the weights of tests/reference/pytorch/,
                 exported with our layout (the test compares them with the built-ins)
  bad_*          one unsupported feature each: an operator (Sigmoid), a Conv attribute
                 (dilations), a grouped Conv, a non-series-parallel DAG
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "onnx")
sys.path.insert(0, os.path.join(ROOT, "analysis", "reference"))
from export_pytorch import MLP, LeNet  # noqa: E402  (oodcert's built-in layouts)

OPSET = 17
CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2470, 0.2435, 0.2616]


class Normalize(nn.Module):
    """(x - mean) / std per channel, exported as Sub and Div by constants."""

    def __init__(self, mean, std):
        super().__init__()
        c = len(mean)
        self.register_buffer("mean", torch.tensor(mean).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, c, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class DoneWhenCNN(nn.Module):
    """Normalise, conv+BN (ε = 1e-3) +ReLU, residual block (Add), max-pool, Concat([x, conv(x)]),
    GAP, Gemm."""

    def __init__(self, k=5):
        super().__init__()
        self.norm = Normalize([0.5, 0.4, 0.3], [0.25, 0.2, 0.3])
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=1e-3)  # a non-default ε: folded into the variance
        self.res_conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.res_bn = nn.BatchNorm2d(8)
        self.res_conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.branch = nn.Conv2d(8, 4, 1)
        self.conv_s2 = nn.Conv2d(12, 12, 3, stride=2, padding=1)
        self.fc = nn.Linear(12, k)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(self.norm(x))))
        y = self.res_conv2(F.relu(self.res_bn(self.res_conv1(x))))
        x = F.relu(x + y)
        x = F.max_pool2d(x, 2)
        x = torch.cat([x, F.relu(self.branch(x))], 1)
        x = F.relu(self.conv_s2(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class WideBasic(nn.Module):
    """WRN pre-activation block (Zagoruyko & Komodakis 2016; the OE/energy code's BasicBlock)."""

    def __init__(self, inp, out, stride):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(inp), nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(out), nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.equal = inp == out
        self.shortcut = None if self.equal else nn.Conv2d(inp, out, 1, stride, 0, bias=False)

    def forward(self, x):
        if self.equal:
            out = F.relu(self.bn1(x))
        else:
            x = F.relu(self.bn1(x))
            out = x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return (x if self.equal else self.shortcut(x)) + out


class WideResNet(nn.Module):
    """WRN-depth-widen for CIFAR (32×32×3), as in GReg's and the energy score's code."""

    def __init__(self, depth=40, widen=2, k=10):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.norm = Normalize(CIFAR_MEAN, CIFAR_STD)
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        blocks, inp = [], widths[0]
        for stage, stride in zip(widths[1:], [1, 2, 2]):
            for i in range(n):
                blocks.append(WideBasic(inp, stage, stride if i == 0 else 1))
                inp = stage
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.fc, self.c = nn.BatchNorm2d(inp), nn.Linear(inp, k), inp

    def forward(self, x):
        out = self.blocks(self.conv1(self.norm(x)))
        out = F.avg_pool2d(F.relu(self.bn(out)), 8)
        return self.fc(out.view(-1, self.c))


class Bottleneck(nn.Module):
    def __init__(self, inp, growth):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(inp), nn.Conv2d(inp, 4 * growth, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(4 * growth), nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    def __init__(self, inp, out):
        super().__init__()
        self.bn, self.conv = nn.BatchNorm2d(inp), nn.Conv2d(inp, out, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNetBC(nn.Module):
    """DenseNet-BC (Huang et al. 2017), depth 100, growth 12, compression 0.5, CIFAR: the
    DenseNet3 of the ODIN/energy-score code that GReg evaluates."""

    def __init__(self, depth=100, growth=12, k=10):
        super().__init__()
        n = (depth - 4) // 6
        self.norm = Normalize(CIFAR_MEAN, CIFAR_STD)
        c = 2 * growth
        self.conv1 = nn.Conv2d(3, c, 3, 1, 1, bias=False)
        layers = []
        for stage in range(3):
            for _ in range(n):
                layers.append(Bottleneck(c, growth))
                c += growth
            if stage < 2:
                layers.append(Transition(c, c // 2))
                c //= 2
        self.features = nn.Sequential(*layers)
        self.bn, self.fc, self.c = nn.BatchNorm2d(c), nn.Linear(c, k), c

    def forward(self, x):
        out = F.relu(self.bn(self.features(self.conv1(self.norm(x)))))
        return self.fc(F.avg_pool2d(out, 8).view(-1, self.c))


class Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 3), nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.sigmoid(self.conv(x)).flatten(1))


class Dilated(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 2, 3, dilation=2), nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).flatten(1))


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(1, 2, 1)
        self.conv, self.fc = nn.Conv2d(2, 2, 3, groups=2), nn.Linear(2 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(F.relu(self.conv(self.conv0(x))).flatten(1))


class CrossDag(nn.Module):
    """a = c1(x); b = c2(a); out = (a + x) + b: the forks of x and a join in different nodes."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        a = self.c1(x)
        b = self.c2(a)
        return self.fc(((a + x) + b).flatten(1))


def randomise_bn(model, gen):
    """Non-trivial BatchNorm affine parameters and running statistics."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=gen)
            m.bias.data = 0.2 * torch.randn(c, generator=gen)
            m.running_mean.data = 0.2 * torch.randn(c, generator=gen)
            m.running_var.data = 0.5 + torch.rand(c, generator=gen)


def export(model, shape, path):
    model.eval()
    x = torch.rand(1, *shape)
    torch.onnx.export(model, (x,), path, opset_version=OPSET, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
                      training=torch.onnx.TrainingMode.PRESERVE, dynamo=False)


def write_io(model, path_onnx, shape, n, seed, out_json):
    import onnxruntime as ort

    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=gen)
    with torch.no_grad():
        lt = model(x).numpy()
    sess = ort.InferenceSession(path_onnx, providers=["CPUExecutionProvider"])
    lo = sess.run(None, {"input": x.numpy()})[0]
    rel = np.abs(lo - lt).max() / np.abs(lo).max()
    assert rel < 1e-5, f"{path_onnx}: onnxruntime and PyTorch differ by {rel:.2e}"
    with open(out_json, "w") as f:
        json.dump({"shape": [n, *shape], "input": [float(v) for v in x.numpy().ravel()],
                   "logits_ort": [float(v) for v in lo.ravel()],
                   "logits_torch": [float(v) for v in lt.ravel()]}, f)


def reference_spec(name):
    """The oodcert ModelSpec stored with tests/reference/pytorch/NAME (export_pytorch.py)."""
    from safetensors import safe_open

    path = os.path.join(ROOT, "tests", "reference", "pytorch", f"{name}_io.safetensors")
    with safe_open(path, "pt") as f:
        return json.loads(f.metadata()["spec"])


def load_reference(model, name):
    from safetensors.torch import load_file

    sd = load_file(os.path.join(ROOT, "tests", "reference", "pytorch", f"{name}.safetensors"))
    model.load_state_dict(sd)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", help="also export WRN-40-2 and DenseNet-BC (CIFAR) into this folder")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)

    cnn = DoneWhenCNN()
    randomise_bn(cnn, gen)
    p = os.path.join(OUT, "cnn.onnx")
    export(cnn, (3, 16, 16), p)
    write_io(cnn, p, (3, 16, 16), 4, 10, os.path.join(OUT, "cnn_io.json"))

    for name, cls in [("mlp", MLP), ("lenet28", LeNet)]:
        spec = reference_spec(name)
        m = load_reference(cls(spec), name)
        p = os.path.join(OUT, f"{name}.onnx")
        export(m, tuple(spec["input_shape"]), p)
        write_io(m, p, tuple(spec["input_shape"]), 3, 11, os.path.join(OUT, f"{name}_io.json"))

    for name, m in [("bad_sigmoid", Sigmoid()), ("bad_dilation", Dilated()),
                    ("bad_groups", Grouped()), ("bad_dag", CrossDag())]:
        export(m, (1, 8, 8), os.path.join(OUT, f"{name}.onnx"))

    if args.big:
        os.makedirs(args.big, exist_ok=True)
        for name, m in [("wrn40_2", WideResNet()), ("densenet_bc", DenseNetBC())]:
            randomise_bn(m, gen)
            p = os.path.join(args.big, f"{name}.onnx")
            export(m, (3, 32, 32), p)
            write_io(m, p, (3, 32, 32), 2, 12, os.path.join(args.big, f"{name}_io.json"))
            print(name, sum(t.numel() for t in m.parameters()), "parameters")


if __name__ == "__main__":
    main()
