#!/usr/bin/env python3
"""PyTorch reference for BENCHMARKS.md's imported-model rows: eval-mode forward passes of the
export script's WRN-40-2 and DenseNet-BC (CIFAR 3×32×32), batch 64, 1024 images, 2 threads;
prints wall and process CPU seconds.  python3 analysis/onnx/forward_torch.py"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_fixtures import DenseNetBC, WideResNet  # noqa: E402

torch.set_num_threads(2)
torch.manual_seed(0)
x = torch.rand(1024, 3, 32, 32)
for name, m in [("wrn40_2", WideResNet()), ("densenet_bc", DenseNetBC())]:
    m.eval()
    with torch.no_grad():
        m(x[:64])
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, 1024, 64):
            m(x[i:i + 64])
        w, c = time.perf_counter() - w0, time.process_time() - c0
    print(f"{name}: 1024 images in {w:.2f} s wall, {c:.2f} s CPU ({1024 / c:.0f} img per CPU-second)")
