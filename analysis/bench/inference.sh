#!/usr/bin/env bash
# Inference throughput, oodcert (candle) and PyTorch side by side, in one go: the MLP and LeNet at
# batch 1000 (criterion bench `inference` vs inference_torch.py), then ResNet-18 on 3×32×32 inputs
# (bench `resnet18` vs inference_torch.py --resnet18): eval-mode inference at RESNET_BATCH, one
# cross-entropy training step at TRAIN_BATCH and one exact GReg step (double backprop, half ID and
# half outliers) at GREG_BATCH, each side in its own process under /usr/bin/time -v
# for its peak memory (max RSS), interleaved REPS times so that load hits both sides alike.
# Usage (repository root): analysis/bench/inference.sh [python]   (a Python with torch; see analysis/bench/README.md)
# Env: PARTS ("small resnet resnet-train resnet-greg"), RESNET_BATCH (500), TRAIN_BATCH (128),
# GREG_BATCH (64; a ResNet-18 GReg step at 32 + 32 peaks at ~4.8 GB on the oodcert side), RUNS (timed
# runs per process, 3), REPS (2), RESNET_MODEL (a model file for the oodcert side; default: fresh weights).
set -euo pipefail
PY="${1:-${PYTHON:-python3}}"
cd "$(dirname "$0")/../.."
PARTS=${PARTS:-small resnet resnet-train resnet-greg}
RESNET_BATCH=${RESNET_BATCH:-500}; TRAIN_BATCH=${TRAIN_BATCH:-128}; GREG_BATCH=${GREG_BATCH:-64}; RUNS=${RUNS:-3}; REPS=${REPS:-2}
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(nproc) cores  load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "oodcert: candle $(grep -A1 'name = "candle-core"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p'); $("$PY" -c 'import torch; print("torch", torch.__version__)')"
rss() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
for part in $PARTS; do
  case $part in
    small)
      echo "== MLP and LeNet, batch 1000: oodcert (criterion)"
      cargo bench --bench inference 2>&1 | grep -E "inference_batch1000|time:|thrpt:"
      echo "== PyTorch"
      "$PY" analysis/bench/inference_torch.py
      ;;
    resnet|resnet-train|resnet-greg)
      case $part in
        resnet) mode=infer; b=$RESNET_BATCH ;;
        resnet-train) mode=train; b=$TRAIN_BATCH ;;
        *) mode=greg; b=$GREG_BATCH ;;
      esac
      exe=$(cargo bench --bench resnet18 --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*resnet18-[0-9a-f]*\)).*/\1/p' | tail -1)
      [ -x "$exe" ] || { echo "could not build or find the resnet18 bench" >&2; exit 1; }
      t=$(mktemp)
      for rep in $(seq 1 "$REPS"); do
        # As `oodcert` runs it: the variable unset, so second-order gradients only on the GReg
        # step's thread (src/train/second_order.rs).
        env -u CANDLE_GRAD_DO_NOT_DETACH RAYON_NUM_THREADS=2 /usr/bin/time -v -o "$t" "$exe" "$mode" "$b" "$RUNS" ${RESNET_MODEL:+"$RESNET_MODEL"} | sed "s/^/oodcert rep $rep: /" | tr -d '\n'
        echo "; max RSS $(rss "$t") kB"
        /usr/bin/time -v -o "$t" "$PY" analysis/bench/inference_torch.py --resnet18 "$mode" "$b" "$RUNS" | sed "s/^/pytorch rep $rep: /" | tr -d '\n'
        echo "; max RSS $(rss "$t") kB"
      done
      rm -f "$t"
      ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
