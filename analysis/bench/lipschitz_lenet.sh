#!/usr/bin/env bash
# Issue 11's LeNet targets side by side: certified local Lipschitz bound / PGD on the first 5
# mnist:test images (`--methods pgd,local,recurjac`), ℓ∞ ε = 0.005 ∩ [0, 1], ℓ∞ ε = 0.005 and
# ℓ2 ε = 0.1, for a baseline binary and for this one with CROWN (--alpha-iters 0) and α-CROWN
# (--alpha-iters 10). Prints per image PGD, upper_local, their ratio, the median ratio and the
# seconds per sample of the local and RecurJac stages; wall time and peak RSS in OUT/time.log.
#
# usage: LENET_MODEL=… OODCERT_DATA=… bash analysis/bench/lipschitz_lenet.sh OUT BASE_BIN NEW_BIN
# (the LeNet of the issue: oodcert train --config analysis/configs/quick.toml
#  --set model.arch=lenet --set 'model.hidden=[]').
set -euo pipefail
OUT=$1 OLD=$2 NEW=$3
: "${LENET_MODEL:?set LENET_MODEL to the LeNet model.safetensors}"
: "${OODCERT_DATA:?set OODCERT_DATA to the data folder}"
mkdir -p "$OUT"
run() { # name binary args...
  local name=$1 bin=$2
  shift 2
  /usr/bin/time -f "$name %e s %M KB" "$bin" lipschitz --model "$LENET_MODEL" --data mnist:test \
    --limit 5 --subset first --methods pgd,local,recurjac --out "$OUT/$name" \
    --data-dir "$OODCERT_DATA" --quiet "$@" 2>>"$OUT/time.log" >/dev/null
}
for ball in "linfbox:--norm linf --eps 0.005 --box" "linf:--norm linf --eps 0.005" \
  "l2:--norm l2 --eps 0.1"; do
  tag=${ball%%:*}
  read -ra args <<<"${ball#*:}"
  run "${tag}_base" "$OLD" "${args[@]}"
  run "${tag}_crown" "$NEW" "${args[@]}" --alpha-iters 0
  run "${tag}_alpha10" "$NEW" "${args[@]}" --alpha-iters 10
done
python3 - "$OUT" <<'PY'
import csv, os, statistics, sys
out = sys.argv[1]
for d in sorted(os.listdir(out)):
    p = os.path.join(out, d, "lipschitz.csv")
    if not os.path.exists(p):
        continue
    rows = list(csv.DictReader(open(p)))
    ratio = [float(r["upper_local"]) / float(r["lower_pgd"]) for r in rows]
    summ = {r[0]: r for r in csv.reader(open(os.path.join(out, d, "summary.csv")))}
    sec = lambda k: float(summ[f"seconds_per_sample_{k}"][2])
    print(f"{d:16s} pgd {[round(float(r['lower_pgd']), 1) for r in rows]} "
          f"local {[round(float(r['upper_local']), 1) for r in rows]} "
          f"ratio {[round(v, 2) for v in ratio]} median {statistics.median(ratio):.2f} "
          f"s/sample local {sec('local'):.2f} recurjac {sec('recurjac'):.2f}")
PY
grep -v '^oodcert' "$OUT/time.log"
