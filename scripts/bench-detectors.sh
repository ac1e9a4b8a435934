#!/usr/bin/env bash
# The gradient detectors (and MSP, GradNorm) end to end against their
# reference code, on one torchvision ResNet-50 at 224 on the same cores:
# images/s per method and the ratio (ours / reference; > 1 means we are
# faster). Not part of CI.
#
#   cargo build --release && bash scripts/bench-detectors.sh
#   METHODS=grood,nac-ue BATCH=8 bash scripts/bench-detectors.sh
#
# Both sides load the same weights (torchvision's seeded initialization,
# saved once by the Python side) and time random inputs. The fit both sides
# use is $FIT_IMAGES images of the shared ImageNet sample labelled with this
# model's own predictions, so GROOD's index holds every one of them; NAC-UE,
# GROOD and LowDim-Grad fit before the clock starts on both sides. The reference side is
# scripts/bench_detectors.py: the paper's one-image-at-a-time GradNorm and
# the reference copies in tests/fixtures/gradient_detectors/make.py.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/gradnorm-tui}
VENV=${VENV:-/tmp/venv-torch}
THREADS=${THREADS:-2}
BATCH=${BATCH:-16}
IMAGES=${IMAGES:-32}
FIT_IMAGES=${FIT_IMAGES:-64}
METHODS=${METHODS:-msp,gradnorm,gaia-a,gaia-z,nac-ue,grood,lowdim-grad}
SAMPLE=${SAMPLE:-../shared/data/imagenet-sample/list.txt}

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch torchvision numpy pillow --index-url https://download.pytorch.org/whl/cpu ||
    "$VENV/bin/pip" install -q torch torchvision numpy pillow
fi
[ -f "$SAMPLE" ] || { echo "no image list at $SAMPLE (set SAMPLE=)" >&2; exit 2; }
PY=("$VENV/bin/python" scripts/bench_detectors.py --threads "$THREADS" --batch "$BATCH" --images "$IMAGES")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "# $(date -u +%FT%TZ) $(uname -n); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# ours: $BIN ($(git rev-parse --short HEAD 2>/dev/null || echo '?')), RAYON_NUM_THREADS=$THREADS; ResNet-50 @224, batch $BATCH, $IMAGES images per method, fit of $FIT_IMAGES"
"${PY[@]}" --dir "$tmp" --save "$tmp" --images-list "$SAMPLE" --fit-images "$FIT_IMAGES"
RAYON_NUM_THREADS=$THREADS "$BIN" fit --checkpoint "$tmp/resnet50.pth" --model resnet --device cpu \
  --image-size 224 --train "$tmp/fit.txt" --batch "$BATCH" --out "$tmp/fit.safetensors" >/dev/null 2>&1

printf '%-10s %12s %12s %7s\n' method "ours img/s" "ref img/s" ratio
for m in ${METHODS//,/ }; do
  ours=$(RAYON_NUM_THREADS=$THREADS "$BIN" bench --checkpoint "$tmp/resnet50.pth" --model resnet \
    --device cpu --image-size 224 --batch "$BATCH" --images "$IMAGES" --fit "$tmp/fit.safetensors" \
    --methods "$m" --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["end_to_end_img_per_s"])')
  ref=$("${PY[@]}" --dir "$tmp" --methods "$m" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["img_per_s"])')
  python3 -c 'import sys; o, r = map(float, sys.argv[2:]); print(f"{sys.argv[1]:<10} {o:12.2f} {r:12.2f} {o / r:7.2f}")' "$m" "$ours" "$ref"
done
