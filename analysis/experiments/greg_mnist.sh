#!/usr/bin/env bash
# Issue 3 item 6: energy loss vs GReg vs GReg+ (and GReg+ two-way), plus the DOS baseline (absent-class
# loss, K+1-output model; evaluated with the energy over its K ID logits and with DOS's own
# absent-class score, eval-absent/), fine-tuned on MNIST from ONE
# cross-entropy pre-trained checkpoint (analysis/configs/quick.toml, seed 0), 3 fine-tuning seeds each,
# auxiliary outliers = fashion-mnist:train, evaluated on mnist:test vs six OOD sets never trained on.
# Regenerates papers/data/greg_mnist_*.csv, papers/figures/greg_mnist_gradnorm.png and the tables in
# papers/greg_mnist.md from a fresh checkout:
#   bash analysis/experiments/greg_mnist.sh            # ~15 min on 2 busy cores
# Env: OUT (default runs/experiments/greg_mnist), SEEDS (default "0 1 2"), VARIANTS (default all five),
#      PY (python with numpy+matplotlib, default $PYTHON or python3), OODCERT_BIN (a binary to use
#      instead of the private copy $OUT/bin/oodcert, e.g. to add the DOS arm to runs made by an older
#      build). Finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/experiments/greg_mnist}
SEEDS=${SEEDS:-"0 1 2"}
VARIANTS=${VARIANTS:-"energy greg gregplus gregplus2way dos"}
PY=${PY:-${PYTHON:-python3}}
OOD="animal-mnist:test,textures:test,lfw:test,digits8:test,noise-gauss:test,noise-uniform:test"
# A private copy of the binary: others may rebuild target/release while this runs.
[ -x target/release/oodcert ] || cargo build --release
mkdir -p "$OUT/bin"
BIN=${OODCERT_BIN:-"$OUT/bin/oodcert"}
[ -x "$BIN" ] || { cp target/release/oodcert "$BIN.tmp" && mv "$BIN.tmp" "$BIN"; }
sha256sum "$BIN" >&2
mkdir -p "$OUT"
$BIN data fetch >&2

# 1. One CE pre-training (the checkpoint every fine-tuning run starts from).
if [ ! -f "$OUT/ce/manifest.json" ]; then
  $BIN train --config analysis/configs/quick.toml --out "$OUT/ce" --seed 0 --quiet
fi
CE="$OUT/ce/model.safetensors"

# 2. Fine-tuning: same step budget (finetune-*.toml: 600 steps, batch 64 ID + 64 aux), seed = order/sampling.
variant_args() {
  case "$1" in
    energy)       echo "--config analysis/configs/finetune-energy.toml" ;;
    greg)         echo "--config analysis/configs/finetune-greg.toml" ;;
    gregplus)     echo "--config analysis/configs/finetune-greg.toml --set sampler.kind=greg-plus" ;;
    gregplus2way) echo "--config analysis/configs/finetune-greg.toml --set sampler.kind=greg-plus --set sampler.two_way=true" ;;
    dos)          echo "--config analysis/configs/finetune-dos.toml" ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}
for v in $VARIANTS; do
  for s in $SEEDS; do
    d="$OUT/$v-s$s"
    if [ ! -f "$d/manifest.json" ]; then
      # shellcheck disable=SC2046
      $BIN train $(variant_args "$v") --set model.init_from="$CE" --seed "$s" --out "$d" --quiet
    fi
  done
done

# 3. Evaluation: detection metrics, and mean ‖∇ₓS‖₂ at the clean test points via
#    `oodcert lipschitz --methods sample` (its grad_norm column = ‖∇ₓS(x)‖₂ at the centre, in f64):
#    the quantity of `oodcert reproduce`'s mean_energy_grad_norm, on the first GRAD_ID (300) ID and
#    GRAD_OOD (100) images of each OOD set (reproduce uses 1000; lipschitz goes one image at a time).
for d in "$OUT/ce" $(for v in $VARIANTS; do for s in $SEEDS; do echo "$OUT/$v-s$s"; done; done); do
  m="$d/model.safetensors"
  [ -f "$d/eval/metrics.csv" ] || $BIN eval --model "$m" --id mnist:test --ood "$OOD" --out "$d/eval" --quiet
  # DOS's own test score (the absent-class probability, as log-odds) beside the energy of its K ID logits.
  case "$d" in */dos-s*)
    [ -f "$d/eval-absent/metrics.csv" ] || $BIN eval --model "$m" --id mnist:test --ood "$OOD" \
      --score absent-class --out "$d/eval-absent" --quiet ;;
  esac
  for set in mnist:test ${OOD//,/ }; do
    g="$d/grad/${set%%:*}"
    [ -f "$g/summary.csv" ] && continue
    flag="--is-ood"; lim=${GRAD_OOD:-100}
    [ "$set" = mnist:test ] && { flag=""; lim=${GRAD_ID:-300}; }
    $BIN lipschitz --model "$m" --data "$set" $flag --id-val mnist:train --id-val-limit 500 --norm l2 --eps 0 \
      --methods sample --samples 0 --limit "$lim" --subset first --out "$g" --quiet
  done
done

# 4. Tables, CSVs and the figure.
$PY analysis/experiments/greg_mnist_report.py "$OUT"
