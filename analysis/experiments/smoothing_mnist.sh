#!/usr/bin/env bash
# Issue 5 "Done when": randomized-smoothing certified-detection curves of the energy-fine-tuned MNIST
# MLP (no penalty) and the GReg one (λ_∇ = 1), both seed 0 of analysis/experiments/greg_mnist.sh (run
# it first, or this script runs it for the two models), at σ ∈ {0.12, 0.25, 0.5}.
#   bash analysis/experiments/smoothing_mnist.sh
# Wall time on 2 cores: 77 min for the six runs at N=100000 with calibration (cores loaded 7–10 by
# other jobs; papers/smoothing_mnist.md); minutes at the default N=2000.
# Subset: the first LIMIT (200) images of mnist:test (ID) and of animal-mnist:test (OOD: the only one
# of our six OOD sets the models do not already separate perfectly); n0 = 100, n = N (2000), α = 0.001;
# γ from clean scores of the first 1000 mnist:train images, clip [a, b] from noisy ID (a) and noisy
# fashion-mnist:train = the training auxiliary set (b) validation scores, 100 copies each.
# Writes papers/data/smoothing_mnist_curves.csv, papers/data/smoothing_mnist_summary.csv and
# papers/figures/smoothing_mnist.png (via smoothing_mnist_report.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
GREG_OUT=${GREG_OUT:-runs/experiments/greg_mnist}
OUT=${OUT:-runs/experiments/smoothing_mnist}
LIMIT=${LIMIT:-200}
N=${N:-2000}
SIGMAS=${SIGMAS:-"0.12 0.25 0.5"}
PY=${PY:-${PYTHON:-python3}}
# A private copy of the binary: others may rebuild target/release while this runs.
[ -x target/release/oodcert ] || cargo build --release
mkdir -p "$OUT/bin"
BIN="$OUT/bin/oodcert"
[ -x "$BIN" ] || { cp target/release/oodcert "$BIN.tmp" && mv "$BIN.tmp" "$BIN"; }
sha256sum "$BIN" >&2
for v in energy greg; do
  [ -f "$GREG_OUT/$v-s0/manifest.json" ] || OUT="$GREG_OUT" SEEDS=0 VARIANTS="energy greg" bash analysis/experiments/greg_mnist.sh
done
for v in energy greg; do
  for s in $SIGMAS; do
    d="$OUT/$v-sigma$s"
    [ -f "$d/manifest.json" ] && continue
    $BIN certify --model "$GREG_OUT/$v-s0/model.safetensors" --data mnist:test --ood animal-mnist:test \
      --sigma "$s" --n0 100 --n "$N" --alpha 0.001 --limit "$LIMIT" --subset first --seed 0 \
      --id-val mnist:train --aux-val fashion-mnist:train --cal-n 100 --cal-limit 1000 --out "$d" 2>&1 \
      | grep -v 'noisy passes' >&2
  done
done
$PY analysis/experiments/smoothing_mnist_report.py "$OUT"
