#!/usr/bin/env bash
# Issue 11 "Done when": the Lipschitz evidence of papers/lipschitz_mnist.md with radii NOT capped by ε
# (searched upward to --radius-max, default the pixel box's diameter), for the seed-0 energy-loss and
# GReg MLPs of analysis/experiments/greg_mnist.sh (byte-identical to `oodcert reproduce`'s stages;
# trained here when absent: quick.toml CE, then finetune-{energy,greg}.toml, seed 0), then every
# certificate attacked by `oodcert verify`. Medians get distribution-free 95% confidence intervals
# (order statistics) and the paired energy-vs-GReg radius difference a sign-test interval
# (lipschitz_mnist_report.py, Python standard library only).
#   bash analysis/experiments/lipschitz_mnist.sh        # ~10-20 min on 2 cores
# Env: OUT (runs/experiments/lipschitz_mnist), MODELS (runs/experiments/greg_mnist), LIMIT (50 first
#      mnist:test images), EPS (0.3), METHODS (default set + recurjac), PY (python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/experiments/lipschitz_mnist}
MODELS=${MODELS:-runs/experiments/greg_mnist}
LIMIT=${LIMIT:-50}
EPS=${EPS:-0.3}
METHODS=${METHODS:-sample,pgd,clever,local,global,radius,recurjac}
PY=${PY:-${PYTHON:-python3}}
[ -x target/release/oodcert ] || cargo build --release
mkdir -p "$OUT/bin"
BIN="$OUT/bin/oodcert"
[ -x "$BIN" ] || { cp target/release/oodcert "$BIN.tmp" && mv "$BIN.tmp" "$BIN"; }
sha256sum "$BIN" >&2
$BIN data fetch --only mnist,fashion-mnist >&2
if [ ! -f "$MODELS/ce/manifest.json" ]; then
  $BIN train --config analysis/configs/quick.toml --out "$MODELS/ce" --seed 0 --quiet
fi
for v in energy greg; do
  if [ ! -f "$MODELS/$v-s0/manifest.json" ]; then
    $BIN train --config "analysis/configs/finetune-$v.toml" --out "$MODELS/$v-s0" --seed 0 --quiet \
      --set "model.init_from=$MODELS/ce/model.safetensors"
  fi
done
for v in energy greg; do
  d="$OUT/$v"
  if [ ! -f "$d/manifest.json" ]; then
    $BIN lipschitz --model "$MODELS/$v-s0/model.safetensors" --data mnist:test --norm l2 --eps "$EPS" \
      --limit "$LIMIT" --subset first --id-val-limit 5000 --bounds crown --methods "$METHODS" \
      --quiet --out "$d"
  fi
  if [ ! -f "$d/verify/verify_summary.csv" ]; then
    $BIN verify --run "$d" --steps 20 --restarts 3 --out "$d/verify"
  fi
done
$PY analysis/experiments/lipschitz_mnist_report.py "$OUT"
