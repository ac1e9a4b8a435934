#!/usr/bin/env bash
# Our CPU forward pass against PyTorch's (eager, oneDNN) on the same cores,
# back to back, for BiT-S-R101x1 @480 (the paper's model and size) and
# EfficientNet-Lite0 @224: images/s, CPU seconds per image, and the ratios
# (ours / PyTorch; > 1 means we are faster). Not part of CI.
#
#   cargo build --release && bash scripts/bench-vs-pytorch.sh
#
# PyTorch goes into a throwaway venv ($VENV, made once). Both sides run
# random weights on random inputs (the speed does not depend on them), the
# same batch, $THREADS threads; PyTorch is timed in NCHW and channels-last
# and the faster counts. ROUNDS > 1 alternates the two sides and keeps each
# side's best round (the machine is shared: noise only ever slows a run).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/gradnorm-tui}
VENV=${VENV:-/tmp/venv-torch}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
BIT_BATCH=${BIT_BATCH:-8} BIT_IMAGES=${BIT_IMAGES:-16}
EFF_BATCH=${EFF_BATCH:-32} EFF_IMAGES=${EFF_IMAGES:-256}

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  # The CPU-only wheel index is not always reachable; PyPI's wheel runs on
  # the CPU as well.
  "$VENV/bin/pip" install -q torch numpy --index-url https://download.pytorch.org/whl/cpu ||
    "$VENV/bin/pip" install -q torch numpy
fi
PY=("$VENV/bin/python" scripts/bench_vs_pytorch.py --threads "$THREADS")

echo "# $(date -u +%FT%TZ) $(uname -n); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# ours: $BIN ($(git rev-parse --short HEAD 2>/dev/null || echo '?')), RAYON_NUM_THREADS=$THREADS"

best() { # file key -> the largest value of key over the JSON lines in file
  python3 -c 'import json,sys; print(max(json.loads(l)[sys.argv[2]] for l in open(sys.argv[1]) if l.startswith("{")))' "$1" "$2"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$ROUNDS"); do
  echo "## round $r"
  RAYON_NUM_THREADS=$THREADS "$BIN" bench --device cpu --json --methods msp \
    --model BiT-S-R101x1 --image-size 480 --batch "$BIT_BATCH" --images "$BIT_IMAGES" | tee -a "$tmp/ours-bit"
  for cl in "" --channels-last; do
    "${PY[@]}" --model bit-s-r101x1 --image-size 480 --batch "$BIT_BATCH" --images "$BIT_IMAGES" $cl \
      2>/dev/null | tee -a "$tmp/torch-bit"
  done
  RAYON_NUM_THREADS=$THREADS "$BIN" bench --device cpu --json --methods msp \
    --model efficientnet-lite0 --image-size 224 --batch "$EFF_BATCH" --images "$EFF_IMAGES" | tee -a "$tmp/ours-eff"
  for cl in "" --channels-last; do
    "${PY[@]}" --model efficientnet-lite0 --image-size 224 --batch "$EFF_BATCH" --images "$EFF_IMAGES" $cl \
      2>/dev/null | tee -a "$tmp/torch-eff"
  done
done

# CPU seconds per image of our forward pass: the bench's process time at
# two image counts, differenced (model building and warm-up cancel out; each
# extra batch runs twice, timed forward and timed end to end with MSP).
ours_cpu() { # images -> user + system seconds
  /usr/bin/time -f '%U %S' -o "$tmp/time" env RAYON_NUM_THREADS="$THREADS" "$BIN" bench \
    --device cpu --json --methods msp --model BiT-S-R101x1 --image-size 480 \
    --batch "$BIT_BATCH" --images "$1" >/dev/null
  awk '{print $1 + $2}' "$tmp/time"
}
if [ "${CPU_TIME:-1}" = 1 ]; then
  echo "## CPU seconds per image, BiT-S-R101x1 @480, batch $BIT_BATCH, $THREADS threads (noise-robust)"
  a=$(ours_cpu "$BIT_BATCH")
  b=$(ours_cpu $((3 * BIT_BATCH)))
  o=$(python3 -c "print(($b - $a) / (4 * $BIT_BATCH))")
  t=$(python3 -c 'import json,sys; print(min(json.loads(l)["cpu_s_per_img"] for l in open(sys.argv[1]) if l.startswith("{")))' "$tmp/torch-bit")
  printf 'ours %.3f s/img  pytorch %.3f s/img (best of its runs above)  ratio (pytorch / ours) %.2f\n' "$o" "$t" "$(python3 -c "print($t/$o)")"
fi

echo "## best of $ROUNDS rounds, forward img/s (ratio = ours / PyTorch)"
for m in bit eff; do
  o=$(best "$tmp/ours-$m" forward_img_per_s)
  t=$(best "$tmp/torch-$m" forward_img_per_s)
  name=$([ $m = bit ] && echo "BiT-S-R101x1 @480, batch $BIT_BATCH" || echo "EfficientNet-Lite0 @224, batch $EFF_BATCH")
  printf '%-36s ours %8.3f  pytorch %8.3f  ratio %5.2f\n' "$name" "$o" "$t" "$(python3 -c "print($o/$t)")"
done
