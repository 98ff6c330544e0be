#!/usr/bin/env bash
# Issue #14 item 3: guaranteed AUROC / FPR95 of the MNIST-open-set LeNets under CROWN bounds, every
# seed of each arm (papers/benchmarks.md, "Guaranteed AUROC"): OOD = the held-out digits
# mnist:test#6-9 scored by the certified lower bound of S over the NORM ball (linf, or l2), ID =
# mnist:test#0-5 by the clean score (clean-id) or its certified upper bound (certified-id); LIMIT
# (50) stratified images per set (subset seed 0), ε in EPS (linf: 0.001,0.003,0.01; l2:
# 0.01,0.03,0.1,0.3). Writes $OUT/ARM-sSEED/ (ℓ2: $OUT/l2-ARM-sSEED/; oodcert's bounds.csv,
# guaranteed.csv, manifest.json), $OUT/guaranteed_NORM_BOUNDS.csv (one table: arm, seed, then
# guaranteed.csv's columns) and $OUT/guaranteed_NORM_BOUNDS_claims.csv (`oodcert claims`, GReg
# against energy on AUROC, one "set" per ε and variant), the files
# papers/data/benchmarks/mnist-open-set/ keeps.
#   bash analysis/experiments/guaranteed_open_set.sh        # each model skips finished work
# Wall time on 2 idle cores: about 10 min (113–131 s per model with CROWN on one core, two models
# at a time, 10 models; papers/benchmarks.md, 2026-12-06 20:06–20:20 UTC).
# Env: CAMPAIGN (runs/benchmarks/mnist-open-set: the models ARM-sSEED/model.safetensors, from
#      `bash analysis/experiments/benchmark.sh mnist-open-set`), OUT (runs/experiments/guaranteed_open_set),
#      ARMS ("energy greg"), SEEDS ("0 1 2 3 4"), LIMIT (50), NORM (linf), EPS, BOUNDS (crown), BIN (a private
#      copy of target/release/oodcert). One thread per model, JOBS (1) models at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
CAMPAIGN=${CAMPAIGN:-runs/benchmarks/mnist-open-set}
OUT=${OUT:-runs/experiments/guaranteed_open_set}
ARMS=${ARMS:-energy greg}
SEEDS=${SEEDS:-0 1 2 3 4}
LIMIT=${LIMIT:-50}
NORM=${NORM:-linf}
case $NORM in
  linf) EPS=${EPS:-0.001,0.003,0.01}; PREFIX= ;;
  l2) EPS=${EPS:-0.01,0.03,0.1,0.3}; PREFIX=l2- ;;
  *) echo "guaranteed_open_set.sh: NORM must be linf or l2, got $NORM" >&2; exit 2 ;;
esac
BOUNDS=${BOUNDS:-crown}
JOBS=${JOBS:-1}
mkdir -p "$OUT"
if [ -z "${BIN:-}" ]; then
  [ -x target/release/oodcert ] || cargo build --release
  BIN="$OUT/oodcert"
  [ -x "$BIN" ] || { cp target/release/oodcert "$BIN.tmp" && mv "$BIN.tmp" "$BIN"; }
fi
sha256sum "$BIN" >&2

one() {  # one ARM SEED: the guaranteed curves of one model (skipped when finished)
  local arm=$1 seed=$2 d="$OUT/$PREFIX$1-s$2" model="$CAMPAIGN/$1-s$2/model.safetensors"
  [ -f "$model" ] || { echo "guaranteed_open_set.sh: no model $model (run analysis/experiments/benchmark.sh mnist-open-set first)" >&2; return 2; }
  [ -f "$d/guaranteed.csv" ] && return 0
  local t0=$SECONDS
  RAYON_NUM_THREADS=1 "$BIN" guaranteed --model "$model" --id 'mnist:test#0-5' --ood 'mnist:test#6-9' \
    --norm "$NORM" --eps "$EPS" --bounds "$BOUNDS" --limit "$LIMIT" --out "$d" 2>>"$OUT/log.txt"
  echo "$arm seed $seed: $((SECONDS - t0)) s" >&2
}

pids=()
for arm in $ARMS; do
  for seed in $SEEDS; do
    one "$arm" "$seed" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$JOBS" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  done
done
for p in "${pids[@]}"; do wait "$p"; done

table="$OUT/guaranteed_${NORM}_$BOUNDS.csv"
tmp="$table.tmp"
first="$OUT/$PREFIX$(set -- $ARMS; echo "$1")-s$(set -- $SEEDS; echo "$1")/guaranteed.csv"
echo "arm,seed,$(head -1 "$first")" > "$tmp"
for arm in $ARMS; do
  for seed in $SEEDS; do
    tail -n +2 "$OUT/$PREFIX$arm-s$seed/guaranteed.csv" | sed "s/^/$arm,$seed,/" >> "$tmp"
  done
done
mv "$tmp" "$table"
echo "wrote $table" >&2

# GReg against energy on each (ε, variant): the table as `oodcert claims --metrics` reads it (one
# "OOD set" per ε and variant; the columns claims does not decide on left empty).
metrics="$OUT/guaranteed_${NORM}_${BOUNDS}_metrics.csv"
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; print "arm,seed,ood,fpr95,auroc,aupr_in,aupr_out,id_accuracy,n_id,n_ood"; next }
  { printf "%s,%s,eps=%s %s,%s,%s,,,,%s,%s\n", $c["arm"], $c["seed"], $c["eps"], $c["variant"], $c["fpr95"], $c["auroc"], $c["n_id"], $c["n_ood"] }' \
  "$table" > "$metrics.tmp" && mv "$metrics.tmp" "$metrics"
"$BIN" claims --metrics "$metrics" --baseline energy --arm greg --metric auroc --out "$OUT/claims-$NORM-$BOUNDS" >&2
cp "$OUT/claims-$NORM-$BOUNDS/claims.csv" "$OUT/guaranteed_${NORM}_${BOUNDS}_claims.csv"
echo "wrote $OUT/guaranteed_${NORM}_${BOUNDS}_claims.csv" >&2
