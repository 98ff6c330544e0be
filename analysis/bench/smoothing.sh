#!/usr/bin/env bash
# Randomized-smoothing Monte Carlo throughput and peak memory: `oodcert certify` beside PyTorch doing
# the same evaluation (same MLP weights, same images, same batch, 2 threads), in one run, interleaved
# REPS times. Peak memory = max RSS from /usr/bin/time -v at n = 10⁵.
#   bash analysis/bench/smoothing.sh [python]        (default: $PYTHON or python3; see analysis/bench/README.md)
# Env: MODEL (default runs/experiments/greg_mnist/greg-s0/model.safetensors; if absent, a 50-step
# quick.toml model is trained: throughput does not depend on the weights), K (images, 2), N (10⁵),
# BATCH (1000), REPS (2), OUT (runs/bench/smoothing).
set -euo pipefail
PY="${1:-${PYTHON:-python3}}"
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/bench/smoothing}
MODEL=${MODEL:-runs/experiments/greg_mnist/greg-s0/model.safetensors}
K=${K:-2}; N=${N:-100000}; N0=100; BATCH=${BATCH:-1000}; REPS=${REPS:-2}; SIGMA=0.25
GAMMA=-24; CLIP=-30,-15; GAMMA_S=-24
[ -x target/release/oodcert ] || cargo build --release
mkdir -p "$OUT"
BIN="$OUT/oodcert"; cp target/release/oodcert "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
if [ ! -f "$MODEL" ]; then
  "$BIN" train --config analysis/configs/quick.toml --max-steps 50 --out "$OUT/model" --quiet
  MODEL="$OUT/model/model.safetensors"
fi
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "oodcert $(sha256sum "$BIN" | cut -c1-16) (candle $(grep -A1 'name = "candle-core"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')), model $MODEL"
echo "workload: $K mnist:test images x (n0=$N0 + n=$N) noisy copies, sigma=$SIGMA, batch $BATCH, gamma/clip fixed (no calibration)"
for rep in $(seq 1 "$REPS"); do
  d="$OUT/oodcert-$rep"; rm -rf "$d"
  RAYON_NUM_THREADS=2 /usr/bin/time -v -o "$OUT/time-oodcert-$rep.txt" "$BIN" certify --model "$MODEL" --data mnist:test \
    --limit "$K" --sigma $SIGMA --n0 $N0 --n "$N" --batch "$BATCH" --gamma $GAMMA --clip $CLIP --gamma-smoothed $GAMMA_S \
    --out "$d" 2>/dev/null
  mc=$(awk -F, 'NR > 1 { s += $6 } END { printf "%.3f", s }' "$d/certify.csv")
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$OUT/time-oodcert-$rep.txt")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$OUT/time-oodcert-$rep.txt")
  echo "oodcert rep $rep: Monte Carlo ${mc}s (sum of certify.csv time), $(awk -v p=$((K * (N0 + N))) -v s="$mc" 'BEGIN { printf "%.0f", p / s }') passes/s; wall $wall; max RSS ${rss} kB"
  /usr/bin/time -v -o "$OUT/time-torch-$rep.txt" "$PY" analysis/bench/smoothing_torch.py "$MODEL" --limit "$K" --n0 $N0 --n "$N" \
    --sigma $SIGMA --gamma=$GAMMA --clip=$CLIP --batch "$BATCH" --threads 2 --check "$d/certify.csv" > "$OUT/torch-$rep.json" 2> "$OUT/torch-$rep.txt"
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$OUT/time-torch-$rep.txt")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$OUT/time-torch-$rep.txt")
  echo "pytorch rep $rep: $(cat "$OUT/torch-$rep.txt"); wall $wall; max RSS ${rss} kB"
  echo "oodcert counts n: $(awk -F, 'NR > 1 { printf "%s ", $11 }' "$d/certify.csv")"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
