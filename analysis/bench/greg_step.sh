#!/usr/bin/env bash
# One exact GReg step, oodcert (candle, criterion) and PyTorch side by side, in one go.
# Usage (repository root): analysis/bench/greg_step.sh [python]   (a Python with torch; see README.md here)
set -euo pipefail
PY="${1:-${PYTHON:-python3}}"
cd "$(dirname "$0")/../.."
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  cores: $(nproc)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench --bench greg_step 2>&1 | grep -E "^greg_step|time:"
"$PY" analysis/bench/greg_step_torch.py
