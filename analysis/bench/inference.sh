#!/usr/bin/env bash
# Inference throughput, oodcert (candle, criterion) and PyTorch side by side, in one go.
# Usage (repository root): analysis/bench/inference.sh [python]   (a Python with torch; see analysis/bench/README.md)
set -euo pipefail
PY="${1:-${PYTHON:-python3}}"
cd "$(dirname "$0")/../.."
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(nproc) cores"
echo "== oodcert (candle $(grep -A1 'name = "candle-core"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p'))"
cargo bench --bench inference 2>&1 | grep -E "inference_batch1000|time:|thrpt:"
echo "== PyTorch"
"$PY" analysis/bench/inference_torch.py
