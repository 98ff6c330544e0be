#!/usr/bin/env bash
# One exact GReg step, oodcert (candle, criterion) and PyTorch side by side, in one go.
# Usage (repository root): [THREADS=n] analysis/bench/greg_step.sh [python]   (a Python with torch; see README.md here)
# THREADS (default 2) sets both sides' thread counts (RAYON_NUM_THREADS for candle, torch.set_num_threads).
set -euo pipefail
PY="${1:-${PYTHON:-python3}}"
cd "$(dirname "$0")/../.."
export THREADS="${THREADS:-2}" RAYON_NUM_THREADS="${THREADS:-2}"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  cores: $(nproc)  threads: $THREADS  load: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench --bench greg_step 2>&1 | grep -E "^greg_step|time:"
"$PY" analysis/bench/greg_step_torch.py
