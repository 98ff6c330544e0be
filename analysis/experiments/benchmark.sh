#!/usr/bin/env bash
# Issue #14 item 2: one benchmark of analysis/benchmarks/ (mnist-open-set, fashion-mnist,
# good-comparable; papers/benchmarks.md) on LeNet: one CE pre-training (seed 0), then each ARM
# fine-tuned from that checkpoint under each SEED, then every model evaluated (energy score; DOS by its
# absent-class score) on the benchmark's ID test set against its near- and far-OOD sets. Writes $OUT/{ce,ARM-sSEED}/eval/ and
# $OUT/metrics_all.csv (arm, seed, ood, fpr95, auroc, aupr_in, aupr_out, id_accuracy, n_id, n_ood;
# seed "-" for the CE start point) and the verdicts of `oodcert claims` in $OUT/claims/.
#   bash analysis/experiments/benchmark.sh mnist-open-set
# Wall time on 2 cores: about 40 min for the 8 arms × 5 seeds of one benchmark (each LeNet stage
# 12–55 s, each evaluation 10–40 s, one thread per run; measured on cores loaded 8–16 by other
# jobs, papers/benchmarks.md); ARMS="energy greg" about a quarter of that.
# Env: OUT (default runs/benchmarks/NAME), SEEDS (default "0 1 2 3 4"), ARMS (default: every arm,
#      ce-ft energy greg energy-plus greg-plus dos greg-l0.1 greg-l10; papers/benchmarks.md),
#      STEPS (a --max-steps for every training stage, for smoke runs), LIMIT (eval --limit, default 0 =
#      all), OODCERT_BIN (a binary instead of the private copy $OUT/bin/oodcert). Finished runs are
#      skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=${1:?usage: benchmark.sh mnist-open-set|fashion-mnist|good-comparable}
DIR=analysis/benchmarks/$NAME
[ -f "$DIR/sets.env" ] || { echo "benchmark.sh: no benchmark $DIR" >&2; exit 2; }
# shellcheck source=/dev/null
. "$DIR/sets.env"
OUT=${OUT:-runs/benchmarks/$NAME}
SEEDS=${SEEDS:-"0 1 2 3 4"}
ARMS=${ARMS:-"ce-ft energy greg energy-plus greg-plus dos greg-l0.1 greg-l10"}
LIMIT=${LIMIT:-0}
STEP_ARGS=()
[ -n "${STEPS:-}" ] && STEP_ARGS=(--max-steps "$STEPS")
mkdir -p "$OUT/bin"
if [ -n "${OODCERT_BIN:-}" ]; then
  BIN=$OODCERT_BIN
else
  # A private copy of the binary: others may rebuild target/release while this runs.
  [ -x target/release/oodcert ] || cargo build --release
  BIN="$OUT/bin/oodcert"
  [ -x "$BIN" ] || { cp target/release/oodcert "$BIN.tmp" && mv "$BIN.tmp" "$BIN"; }
fi
sha256sum "$BIN" >&2
$BIN data fetch >&2

# 1. One CE pre-training, the start point of every fine-tune.
[ -f "$OUT/ce/manifest.json" ] ||
  $BIN train --config "$DIR/pretrain.toml" --out "$OUT/ce" --seed 0 "${STEP_ARGS[@]}" --quiet
CE="$OUT/ce/model.safetensors"

# 2. Fine-tunes: the arm's config, the seed drives batch order and outlier sampling.
for a in $ARMS; do
  for s in $SEEDS; do
    d="$OUT/$a-s$s"
    [ -f "$d/manifest.json" ] ||
      $BIN train --config "$DIR/finetune-$a.toml" --set model.init_from="$CE" --seed "$s" \
        --out "$d" "${STEP_ARGS[@]}" --quiet
  done
done

# 3. Evaluation (energy score) of the start point and every fine-tune, and one table of all rows.
runs=("$OUT/ce")
for a in $ARMS; do for s in $SEEDS; do runs+=("$OUT/$a-s$s"); done; done
all="$OUT/metrics_all.csv.tmp"
echo "arm,seed,ood,fpr95,auroc,aupr_in,aupr_out,id_accuracy,n_id,n_ood" > "$all"
for d in "${runs[@]}"; do
  base=$(basename "$d")
  arm=${base%-s*}; seed=${base##*-s}; [ "$base" = ce ] && { arm=ce; seed=-; }
  # Each arm is scored as its method scores: DOS by its absent-class score, the rest by the energy.
  score=energy; [ "$arm" = dos ] && score=absent-class
  [ -f "$d/eval/metrics.csv" ] ||
    $BIN eval --model "$d/model.safetensors" --id "$ID_TEST" --ood "$NEAR_OOD,$FAR_OOD" \
      --score "$score" --limit "$LIMIT" --out "$d/eval" --quiet
  # metrics.csv is RFC 4180 CSV (a class list's commas, as in mnist:test#0,2,4, sit in a quoted
  # field): read with a CSV parser, columns by header name.
  python3 - "$d/eval/metrics.csv" "$arm" "$seed" >> "$all" <<'PY'
import csv, sys
path, arm, seed = sys.argv[1:4]
cols = ["ood", "fpr95", "auroc", "aupr_in", "aupr_out", "id_accuracy", "n_id", "n_ood"]
w = csv.writer(sys.stdout, lineterminator="\n")
for row in csv.DictReader(open(path, newline="")):
    w.writerow([arm, seed] + [row[c] for c in cols])
PY
done
mv "$all" "$OUT/metrics_all.csv"
echo "benchmark.sh: wrote $OUT/metrics_all.csv" >&2

# 4. Claims decided over seeds (oodcert claims): every other arm against the energy loss, per OOD
#    set and metric, with t / Welch intervals and the exact rank test; $OUT/claims/claims.{csv,md}.
#    Needs the energy arm and at least 2 seeds. A private binary older than `claims` is skipped
#    with the command to run instead (CLAIMS_BIN names another binary).
others=""
for a in $ARMS; do if [ "$a" != energy ]; then others+="${others:+,}$a"; fi; done
nseeds=$(echo "$SEEDS" | wc -w)
if [[ " $ARMS " == *" energy "* ]] && [ -n "$others" ] && [ "$nseeds" -ge 2 ]; then
  CLAIMS_BIN=${CLAIMS_BIN:-$BIN}
  claims_args=(claims --metrics "$OUT/metrics_all.csv" --baseline energy --arm "$others"
    --metric fpr95,auroc,aupr_in,id_accuracy --reference ce --out "$OUT/claims")
  if "$CLAIMS_BIN" claims --help >/dev/null 2>&1; then
    "$CLAIMS_BIN" "${claims_args[@]}"
  else
    echo "benchmark.sh: $CLAIMS_BIN has no 'claims' command; run: oodcert ${claims_args[*]}" >&2
  fi
fi
