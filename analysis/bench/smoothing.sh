#!/usr/bin/env bash
# Randomized-smoothing Monte Carlo throughput and peak memory: `oodcert certify` (noise layouts v1
# and v2) beside PyTorch doing the same evaluation (same weights, same first K test images, same
# batch, 2 threads), for the MLP, LeNet and ResNet-18, in one run, interleaved REPS times (so a
# machine shared with other work loads both sides alike). Peak memory = max RSS from /usr/bin/time -v.
# The PyTorch side first checks that oodcert certified the same images (`--subset first`) and that
# the clean energies agree; the script stops with an error when they do not.
#   bash analysis/bench/smoothing.sh [python]        (default: $PYTHON or python3; see analysis/bench/README.md)
# Env: MLP_MODEL, LENET_MODEL (default runs/experiments/greg_mnist/greg-s0/model.safetensors and
# none; an absent one is trained for 50 quick.toml steps: throughput does not depend on the
# weights), MODELS ("mlp lenet"; add "resnet" for ResNet-18), LAYOUTS ("v1 v2"), K (images, 2),
# N (10⁵), BATCH (1000), REPS (2), OUT (runs/bench/smoothing), OODCERT_BIN (default
# target/release/oodcert, built if absent), OODCERT_BASE (optional: another oodcert binary, e.g.
# an older build, run with layout v2 in the same interleaved repetitions as "oodcert-base-v2"),
# OODCERT_DATA (MNIST, as for oodcert).
# ResNet-18 (MODELS containing "resnet"): RESNET_MODEL (a 3×32×32 ResNet-18 model file) and
# RESNET_IMAGES (a uint8 (n, 3, 32, 32) NPY file, read by both sides: oodcert's `path:` data) are
# required; RESNET_N (2000) and RESNET_BATCH (500) replace N and BATCH for it.
set -euo pipefail
PY="${1:-${PYTHON:-python3}}"
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/bench/smoothing}
MLP_MODEL=${MLP_MODEL:-runs/experiments/greg_mnist/greg-s0/model.safetensors}
LENET_MODEL=${LENET_MODEL:-}
MODELS=${MODELS:-mlp lenet}; LAYOUTS=${LAYOUTS:-v1 v2}
K=${K:-2}; N=${N:-100000}; N0=100; BATCH=${BATCH:-1000}; REPS=${REPS:-2}; SIGMA=0.25
RESNET_N=${RESNET_N:-2000}; RESNET_BATCH=${RESNET_BATCH:-500}
GAMMA=-24; CLIP=-30,-15; GAMMA_S=-24
SRC_BIN=${OODCERT_BIN:-target/release/oodcert}
[ -x "$SRC_BIN" ] || cargo build --release
mkdir -p "$OUT"
BIN="$OUT/oodcert"; cp "$SRC_BIN" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
VARIANTS=""; for layout in $LAYOUTS; do VARIANTS="$VARIANTS $layout:$BIN"; done
if [ -n "${OODCERT_BASE:-}" ]; then
  cp "$OODCERT_BASE" "$OUT/oodcert-base.tmp" && mv "$OUT/oodcert-base.tmp" "$OUT/oodcert-base"
  VARIANTS="$VARIANTS base-v2:$OUT/oodcert-base"
fi
model_of() {  # model_of mlp|lenet|resnet: a model file, trained briefly when absent (not ResNet-18)
  local m=$1 f
  if [ "$m" = resnet ]; then
    [ -f "${RESNET_MODEL:-}" ] && [ -f "${RESNET_IMAGES:-}" ] || {
      echo "MODELS has resnet: set RESNET_MODEL (a ResNet-18 file) and RESNET_IMAGES (uint8 (n, 3, 32, 32) .npy)" >&2; exit 2; }
    echo "$RESNET_MODEL"; return
  fi
  if [ "$m" = mlp ]; then f=$MLP_MODEL; else f=$LENET_MODEL; fi
  if [ -z "$f" ] || [ ! -f "$f" ]; then
    f="$OUT/model-$m/model.safetensors"
    if [ ! -f "$f" ]; then
      local extra=()
      [ "$m" = lenet ] && extra=(--set model.arch=lenet --set 'model.hidden=[]')
      "$BIN" train --config analysis/configs/quick.toml "${extra[@]}" --max-steps 50 --out "$OUT/model-$m" --quiet >&2
    fi
  fi
  echo "$f"
}
col() {  # col FILE NAME: the sum of column NAME of a CSV (with a header)
  awk -F, -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next } { s += $c } END { printf "%.3f", s }' "$1"
}
field() { sed -n "s/.*$2: //p" "$1"; }
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "${OODCERT_BASE:-}" ] && echo "oodcert-base $(sha256sum "$OUT/oodcert-base" | cut -c1-16) ($OODCERT_BASE)"
echo "oodcert $(sha256sum "$BIN" | cut -c1-16) (candle $(grep -A1 'name = "candle-core"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')), $("$PY" -c 'import torch; print("torch", torch.__version__)')"
echo "workload: first $K test images x (n0=$N0 + n=$N) noisy copies (ResNet-18: n=$RESNET_N, batch $RESNET_BATCH), sigma=$SIGMA, batch $BATCH, 2 threads, gamma/clip fixed (no calibration)"
for m in $MODELS; do echo "model $m: $(model_of "$m")"; done
for rep in $(seq 1 "$REPS"); do
  for m in $MODELS; do
    MODEL=$(model_of "$m")
    if [ "$m" = resnet ]; then
      data="path:$RESNET_IMAGES"; n=$RESNET_N; batch=$RESNET_BATCH; images=(--images "$RESNET_IMAGES")
    else
      data=mnist:test; n=$N; batch=$BATCH; images=()
    fi
    for variant in $VARIANTS; do
      layout=${variant%%:*}; vbin=${variant#*:}; vlayout=${layout#base-}
      d="$OUT/oodcert-$m-$layout-$rep"; rm -rf "$d"
      RAYON_NUM_THREADS=2 /usr/bin/time -v -o "$OUT/time-oodcert-$m-$layout-$rep.txt" "$vbin" certify --model "$MODEL" \
        --data "$data" --limit "$K" --subset first --sigma $SIGMA --n0 $N0 --n "$n" --batch "$batch" \
        --gamma $GAMMA --clip $CLIP --gamma-smoothed $GAMMA_S --noise-layout "$vlayout" --out "$d" 2>/dev/null
      mc=$(col "$d/certify.csv" time)
      t="$OUT/time-oodcert-$m-$layout-$rep.txt"
      echo "$m oodcert-$layout rep $rep: Monte Carlo ${mc}s (sum of certify.csv time), $(awk -v p=$((K * (N0 + n))) -v s="$mc" 'BEGIN { printf "%.0f", p / s }') passes/s; wall $(field "$t" 'Elapsed (wall clock) time (h:mm:ss or m:ss)'); max RSS $(field "$t" 'Maximum resident set size (kbytes)') kB; counts n: $(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "count") c = i; next } { printf "%s ", $c }' "$d/certify.csv")"
    done
    if [ -n "${OODCERT_BASE:-}" ]; then  # certify.csv of the two builds, the time column left out
      strip() { awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "time") c = i } { $c = ""; print }' OFS=, "$1"; }
      if [ "$(strip "$OUT/oodcert-$m-v2-$rep/certify.csv")" = "$(strip "$OUT/oodcert-$m-base-v2-$rep/certify.csv")" ]; then
        echo "$m rep $rep: certify.csv of oodcert-v2 and oodcert-base-v2 identical apart from the time column"
      else
        echo "$m rep $rep: certify.csv of oodcert-v2 and oodcert-base-v2 DIFFER"
      fi
    fi
    t="$OUT/time-torch-$m-$rep.txt"
    if ! /usr/bin/time -v -o "$t" "$PY" analysis/bench/smoothing_torch.py "$MODEL" --limit "$K" --n0 $N0 --n "$n" \
      --sigma $SIGMA --gamma=$GAMMA --clip=$CLIP --batch "$batch" --threads 2 --check "$d/certify.csv" "${images[@]}" \
      > "$OUT/torch-$m-$rep.json" 2> "$OUT/torch-$m-$rep.txt"; then
      echo "ERROR: the PyTorch side failed or its check against oodcert failed:" >&2
      tail -3 "$OUT/torch-$m-$rep.txt" >&2
      exit 1
    fi
    echo "$m pytorch rep $rep: $(tail -1 "$OUT/torch-$m-$rep.txt"); wall $(field "$t" 'Elapsed (wall clock) time (h:mm:ss or m:ss)'); max RSS $(field "$t" 'Maximum resident set size (kbytes)') kB"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
