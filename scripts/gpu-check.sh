#!/usr/bin/env bash
# GPU checks and figures for gradnorm-tui, for the GPU machine (H100/H200,
# no Rust, no network). Two steps, both from the project root:
#
# 1. Here:   bash ../shared/gpu/build-cuda.sh      # .gpu/gradnorm-tui.gz, .gpu/run-on-gpu.sh
#            bash scripts/gpu-check.sh prepare      # .gpu/fixtures, .gpu/images (~57 MB with the binary)
# 2. Device: the `run` tool with command `bash scripts/gpu-check.sh` and carry [".gpu"]
#            (timeout_s 540; it takes about 5 minutes on an H200).
#
# The device run prints the selftest's PASS/FAIL lines, then one JSON line per
# `bench` (also written to $OUT/gpu-check.jsonl when $OUT is set):
#   BiT-S-R101x1 @480 (random weights: the speed is the same): MSP forward and
#   end to end from JPEG files and from memory; msp,energy,odin,gradnorm at f32
#   and bf16; ODIN with eps 0.002; Mahalanobis (synthetic Gaussians, magnitude
#   0.001, unless MAHA_PARAMS and CHECKPOINT name real ones); EfficientNet-Lite0
#   @224 at f32 and bf16.
# .gpu/ is ignored by git: nothing from ../shared enters the repository.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GPU=.gpu

if [ "${1:-}" = prepare ]; then
  set -e
  SHARED=${SHARED:-../shared}
  test -f "$GPU/gradnorm-tui.gz" || { echo "run ../shared/gpu/build-cuda.sh first" >&2; exit 1; }
  mkdir -p "$GPU/fixtures" "$GPU/images"
  cp "$SHARED"/fixtures/bit/tiny.pth.tar "$SHARED"/fixtures/bit/tiny_expected.safetensors "$GPU/fixtures/"
  # 300 ImageNet validation JPEGs (227 px as published in ../shared; the
  # paper's end-to-end figure decodes full-size ones).
  head -n 300 "$SHARED/data/imagenet-val/val_list.txt" | while read -r f _; do
    cp "$SHARED/data/imagenet-val/$f" "$GPU/images/"
  done
  du -sh "$GPU"
  exit 0
fi

BIN=(bash "$GPU/run-on-gpu.sh" gradnorm-tui)
DEVICE=${DEVICE:-cuda}  # cpu: a dry run of the plumbing
LOG=${OUT:-/tmp}/gpu-check.jsonl
: > "$LOG"
# The 300 images listed 16 times: 4,800 decodes per end-to-end measurement.
LIST=$GPU/images/bench_list.txt
ls "$GPU/images" | grep -iE '\.jpe?g$' > /tmp/gpu-check-files.txt
for _ in $(seq 16); do sed 's/$/ 0/' /tmp/gpu-check-files.txt; done > "$LIST"

# Each bench stops after BENCH_TIMEOUT seconds (timeout kills its process
# group), so that a slow configuration cannot eat the rest of the budget.
bench() {
  local line
  line=$(timeout "${BENCH_TIMEOUT:-100}" "${BIN[@]}" bench --device "$DEVICE" --json "$@") || {
    echo "{\"failed\": \"bench $*\"}" | tee -a "$LOG"; return; }
  echo "$line" | tail -n 1 | tee -a "$LOG"
}

echo "== selftest (tiny BiT fixture against the seed's outputs)"
timeout 120 "${BIN[@]}" selftest --fixtures "$GPU/fixtures" --device "$DEVICE"
echo "== bench (JSON lines)"
BIT=(--model BiT-S-R101x1 --image-size 480)
FILES=(--source "$LIST" --images 4800 --workers 16)
# Forward alone with MSP, end to end from files and from memory.
bench "${BIT[@]}" --batch 256 --methods msp "${FILES[@]}"
bench "${BIT[@]}" --batch 256 --methods msp --images 2048
# The issue's end-to-end set, f32 and bf16, from files and from memory.
for dt in f32 bf16; do
  bench "${BIT[@]}" --batch 256 --dtype "$dt" --methods msp,energy,odin,gradnorm "${FILES[@]}"
  bench "${BIT[@]}" --batch 256 --dtype "$dt" --methods msp,energy,odin,gradnorm --images 2048
done
# ODIN with input perturbation (a backward pass and a second forward).
bench "${BIT[@]}" --batch 64 --methods odin --epsilon-odin 0.002 --images 1024
# Mahalanobis with input preprocessing.
if [ -n "${MAHA_PARAMS:-}" ] && [ -n "${CHECKPOINT:-}" ]; then
  bench --checkpoint "$CHECKPOINT" --image-size 480 --batch 64 --methods mahalanobis \
    --mahalanobis-params "$MAHA_PARAMS" --images 512
else
  bench "${BIT[@]}" --batch 64 --methods mahalanobis --images 512
fi
# EfficientNet-Lite0 at 224.
for dt in f32 bf16; do
  bench --model efficientnet-lite0 --batch 512 --dtype "$dt" --methods msp,energy,odin,gradnorm "${FILES[@]}"
  bench --model efficientnet-lite0 --batch 512 --dtype "$dt" --methods msp,energy,odin,gradnorm --images 8192
done
echo "== done: $LOG"
