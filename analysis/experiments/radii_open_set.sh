#!/usr/bin/env bash
# Issue #14 item 5: certified radii of the MNIST-open-set LeNets, energy loss vs GReg (seed 0 unless
# SEEDS says more), on the same ID (mnist:test#0-5) and near-OOD (mnist:test#6-9) images, decided by
# the paired test of `oodcert claims --paired-baseline/--paired-arm` (exact Wilcoxon signed-rank,
# sign test, median difference with its sign-test interval; ID and OOD images separately).
#   bash analysis/experiments/radii_open_set.sh            # all stages; each skips finished work
# Wall time on 2 idle cores, per seed: smoothing of 200 + 200 images per model ≈ 45 min (the two
# models in parallel, one core each); Lipschitz radii at LIP_LIMIT=200 LIP_SHARDS=8 ≈ 91 min
# (≈ 12 s per image and model; papers/radii_open_set.md); claims seconds.
# Stages (STAGES, default "smoothing lipschitz claims"):
#   smoothing  `oodcert certify` at n = N (100 000), σ = SIGMA (0.25), n0 = 100, α = 0.001, on LIMIT
#              (200) stratified images of each set (subset seed 0), γ/clip/γ' calibrated on 1000
#              mnist:train#0-5 images (and fashion-mnist:train, the training auxiliary set, for b),
#              in SHARDS (16) slices run in the order ID, OOD, ID, … (slices 0..S/2−1 are ID images,
#              the rest OOD), so a run stopped early leaves whole, balanced slices (SHARD_LIST
#              "k/N k/N …" runs exactly those slices instead);
#   lipschitz  `oodcert lipschitz --norm l2 --eps EPS (0.1)` on LIP_LIMIT (20) stratified images of
#              each set, radius search uncapped (up to --radius-max = √784 = 28, the default),
#              LIP_ITERS (4) bisection steps, LIP_BOUNDS (crown), methods local,global,radius
#              (FastLip + global bound for the Lipschitz route; minutes per image on the loaded
#              2-core machine, hence the small LIMIT), in LIP_SHARDS (4) slices per set, run
#              ID 0, OOD 0, ID 1, … so a run stopped early leaves balanced slices (LIP_SLICES
#              "k …": only those slices, e.g. slice 0 of every seed first);
#   claims     the paired tests: one folder per (seed, certificate) under $OUT/claims/, from every
#              smoothing slice both arms finished; their
#              paired_claims.csv and paired_curves.csv copied to papers/data/radii_open_set/.
# Env: CAMPAIGN (runs/benchmarks/mnist-open-set: the models ARM-sSEED/model.safetensors), OUT
#      (runs/experiments/radii_open_set), SEEDS ("0"), BIN (a private copy of target/release/oodcert).
# One thread and nice 5 per process (the machine is shared); the two arms run in parallel.
set -euo pipefail
cd "$(dirname "$0")/../.."
CAMPAIGN=${CAMPAIGN:-runs/benchmarks/mnist-open-set}
OUT=${OUT:-runs/experiments/radii_open_set}
SEEDS=${SEEDS:-0}
STAGES=${STAGES:-smoothing lipschitz claims}
N=${N:-100000}
SIGMA=${SIGMA:-0.25}
LIMIT=${LIMIT:-200}
SHARDS=${SHARDS:-16}
EPS=${EPS:-0.1}
LIP_LIMIT=${LIP_LIMIT:-20}
LIP_ITERS=${LIP_ITERS:-4}
LIP_SHARDS=${LIP_SHARDS:-4}
LIP_BOUNDS=${LIP_BOUNDS:-crown}
ID=mnist:test#0-5
OOD=mnist:test#6-9
IDVAL=mnist:train#0-5
export RAYON_NUM_THREADS=1
mkdir -p "$OUT/bin"
if [ -z "${BIN:-}" ]; then
  [ -x target/release/oodcert ] || nice cargo build --release
  BIN="$OUT/bin/oodcert"
  [ -x "$BIN" ] || { cp target/release/oodcert "$BIN.tmp" && mv "$BIN.tmp" "$BIN"; }
fi
sha256sum "$BIN" >&2

# The slices, k/N each: SHARD_LIST, else 0/S, S/2/S, 1/S, S/2+1/S, … (ID, OOD, ID, OOD, …: slices
# 0..S/2−1 hold the ID images, the rest the OOD ones).
order() {
  if [ -n "${SHARD_LIST:-}" ]; then
    echo "$SHARD_LIST"
    return
  fi
  local h=$((SHARDS / 2)) k
  for ((k = 0; k < h; k++)); do echo "$k/$SHARDS $((k + h))/$SHARDS"; done
}

smoothing() { # ARM SEED
  local m="$CAMPAIGN/$1-s$2/model.safetensors" d="$OUT/smoothing/$1-s$2" sh t0
  for sh in $(order); do
    local dir="$d/shard${sh%/*}-of${sh#*/}"
    [ -f "$dir/manifest.json" ] && continue
    t0=$SECONDS
    nice -n 5 "$BIN" certify --model "$m" --data "$ID" --ood "$OOD" --sigma "$SIGMA" --n0 100 --n "$N" \
      --alpha 0.001 --limit "$LIMIT" --subset stratified --subset-seed 0 --seed 0 --id-val "$IDVAL" \
      --aux-val fashion-mnist:train --cal-n 100 --cal-limit 1000 --shard "$sh" \
      --out "$dir" 2>&1 | grep -v 'noisy passes' >&2
    echo "smoothing $1-s$2 shard $sh: $((SECONDS - t0)) s" >&2
  done
}

# The --paired-* flags of one model's smoothing runs: every slice both arms finished (the same
# images in both; slices of different N may be mixed as long as they do not overlap).
smooth_runs() { # FLAG ARM SEED
  local sh
  for sh in $(order); do
    local k="shard${sh%/*}-of${sh#*/}"
    if [ -f "$OUT/smoothing/energy-s$3/$k/manifest.json" ] && [ -f "$OUT/smoothing/greg-s$3/$k/manifest.json" ]; then
      echo "$1 $OUT/smoothing/$2-s$3/$k"
    fi
  done
}

# Lipschitz slices: LIP_SHARDS (4) slices of each set's LIP_LIMIT images, run ID 0, OOD 0, ID 1, …
# (LIP_SLICES "k k …" runs, and pairs, exactly those slice numbers instead: e.g. slice 0 of every
# seed first, for a breadth-first campaign).
lip_order() {
  local k
  for k in ${LIP_SLICES:-$(seq 0 $((LIP_SHARDS - 1)))}; do echo "id/$k ood/$k"; done
}

lipschitz() { # ARM SEED
  local m="$CAMPAIGN/$1-s$2/model.safetensors" d="$OUT/lipschitz/$1-s$2" item set k flag t0
  for item in $(lip_order); do
    set=${item%/*} k=${item#*/}
    local dir="$d/$set-shard$k-of$LIP_SHARDS"
    [ -f "$dir/manifest.json" ] && continue
    t0=$SECONDS
    if [ "$set" = id ]; then data=$ID flag=; else data=$OOD flag=--is-ood; fi
    nice -n 5 "$BIN" lipschitz --model "$m" --data "$data" $flag --id-val "$IDVAL" --norm l2 \
      --eps "$EPS" --limit "$LIP_LIMIT" --subset stratified --subset-seed 0 --bounds "$LIP_BOUNDS" \
      --methods local,global,radius --radius-iters "$LIP_ITERS" --shard "$k/$LIP_SHARDS" --quiet \
      --out "$dir"
    echo "lipschitz $1-s$2 $set shard $k/$LIP_SHARDS: $((SECONDS - t0)) s" >&2
  done
}

# The --paired-* flags of one model's Lipschitz runs: every slice both arms finished.
lip_runs() { # FLAG ARM SEED
  local item
  for item in $(lip_order); do
    local k="${item%/*}-shard${item#*/}-of$LIP_SHARDS"
    if [ -f "$OUT/lipschitz/energy-s$3/$k/manifest.json" ] && [ -f "$OUT/lipschitz/greg-s$3/$k/manifest.json" ]; then
      echo "$1 $OUT/lipschitz/$2-s$3/$k"
    fi
  done
}

for stage in $STAGES; do
  for s in $SEEDS; do
    case $stage in
      smoothing | lipschitz)
        $stage energy "$s" &
        $stage greg "$s" &
        wait
        ;;
      claims)
        sb=$(smooth_runs --paired-baseline energy "$s") sa=$(smooth_runs --paired-arm greg "$s")
        lb=$(lip_runs --paired-baseline energy "$s") la=$(lip_runs --paired-arm greg "$s")
        for cert in radius radius_score; do
          if [ -z "$sb" ]; then echo "claims: no smoothing slice finished by both arms" >&2; break; fi
          # shellcheck disable=SC2086
          "$BIN" claims --baseline energy --arm greg --radius "$cert" $sb $sa \
            --out "$OUT/claims/smoothing-$cert-s$s"
        done
        for cert in radius_bound_prop radius_lipschitz; do
          if [ -z "$lb" ]; then echo "claims: no Lipschitz slice finished by both arms" >&2; break; fi
          # shellcheck disable=SC2086
          "$BIN" claims --baseline energy --arm greg --radius "$cert" $lb $la \
            --out "$OUT/claims/lipschitz-$cert-s$s"
        done
        mkdir -p papers/data/radii_open_set
        for c in "$OUT"/claims/*-s"$s"; do
          [ -f "$c/paired_claims.csv" ] || continue
          for f in paired_claims.csv paired_curves.csv; do
            cp "$c/$f" "papers/data/radii_open_set/$(basename "$c")_$f"
          done
        done
        ;;
      *) echo "unknown stage $stage" >&2; exit 2 ;;
    esac
  done
done
