#!/usr/bin/env bash
# Our CPU forward pass against PyTorch's (eager, oneDNN) on the same cores,
# back to back, for the four backbones: BiT-S-R101x1 @480 (the paper's model
# and size), EfficientNet-Lite0 @224, and torchvision's ResNet-50 and
# ViT-B/16 @224 (OpenOOD's ImageNet backbones; torchvision's own definitions
# on the PyTorch side): images/s and the ratios (ours / PyTorch; > 1 means
# we are faster). Not part of CI.
#
#   cargo build --release && bash scripts/bench-vs-pytorch.sh
#   MODELS="resnet50 vit-b-16" BATCH=1 bash scripts/bench-vs-pytorch.sh
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
BATCH=${BATCH:-8}
MODELS=${MODELS:-"bit-s-r101x1 efficientnet-lite0 resnet50 vit-b-16"}

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  # The CPU-only wheel index is not always reachable; PyPI's wheel runs on
  # the CPU as well.
  "$VENV/bin/pip" install -q torch torchvision numpy --index-url https://download.pytorch.org/whl/cpu ||
    "$VENV/bin/pip" install -q torch torchvision numpy
fi
PY=("$VENV/bin/python" scripts/bench_vs_pytorch.py --threads "$THREADS")

# model -> "our name, image size, images per timed run" (about 10 s each).
spec() {
  case $1 in
    bit-s-r101x1) echo "BiT-S-R101x1 480 $((2 * BATCH))" ;;
    efficientnet-lite0) echo "efficientnet-lite0 224 $((32 * BATCH))" ;;
    resnet50) echo "resnet50 224 $((16 * BATCH))" ;;
    vit-b-16) echo "vit-b-16 224 $((4 * BATCH))" ;;
    *) echo "unknown model $1" >&2; exit 2 ;;
  esac
}

echo "# $(date -u +%FT%TZ) $(uname -n); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# ours: $BIN ($(git rev-parse --short HEAD 2>/dev/null || echo '?')), RAYON_NUM_THREADS=$THREADS; batch $BATCH"

best() { # file key -> the largest value of key over the JSON lines in file
  python3 -c 'import json,sys; print(max(json.loads(l)[sys.argv[2]] for l in open(sys.argv[1]) if l.startswith("{")))' "$1" "$2"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$ROUNDS"); do
  echo "## round $r"
  for m in $MODELS; do
    read -r name size images <<<"$(spec "$m")"
    RAYON_NUM_THREADS=$THREADS "$BIN" bench --device cpu --json --methods msp \
      --model "$name" --image-size "$size" --batch "$BATCH" --images "$images" | tee -a "$tmp/ours-$m"
    for cl in "" --channels-last; do
      "${PY[@]}" --model "$m" --image-size "$size" --batch "$BATCH" --images "$images" $cl \
        2>/dev/null | tee -a "$tmp/torch-$m"
    done
  done
done

echo "## best of $ROUNDS rounds, forward img/s, batch $BATCH (ratio = ours / PyTorch)"
for m in $MODELS; do
  read -r name size _ <<<"$(spec "$m")"
  o=$(best "$tmp/ours-$m" forward_img_per_s)
  t=$(best "$tmp/torch-$m" forward_img_per_s)
  printf '%-28s ours %8.3f  pytorch %8.3f  ratio %5.2f\n' "$name @$size" "$o" "$t" "$(python3 -c "print($o/$t)")"
done
