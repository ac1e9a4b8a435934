#!/usr/bin/env bash
# The CPU figures of README's "Speed" section, as JSON lines: run it before
# and after a change that touches the hot path and compare.
#
#   cargo build --release && bash scripts/bench-cpu.sh > bench.jsonl
#
# Needs ../shared (the EfficientNet-Lite0 weights and ImageNet val JPEGs);
# BiT runs on random weights (the speed does not depend on them).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/gradnorm-tui}
SHARED=${SHARED:-../shared}
IMAGES=$SHARED/data/imagenet-val/images
EFF=(--model efficientnet-lite0 --checkpoint "$SHARED/models/efficientnet-lite0/efficientnet-lite0.safetensors" --image-size 224)
BIT=(--model BiT-S-R101x1 --image-size 480)
ALL=msp,energy,odin,gradnorm

bench() { "$BIN" bench --device cpu --json "$@"; }

# EfficientNet-Lite0 @224: forward, end to end in memory and from files.
bench "${EFF[@]}" --batch 32 --images 256 --methods "$ALL"
bench "${EFF[@]}" --batch 32 --images 512 --methods "$ALL" --source "$IMAGES"
# GradNorm costs what MSP costs (one batched forward, closed form).
bench "${EFF[@]}" --batch 32 --images 256 --methods msp
bench "${EFF[@]}" --batch 32 --images 256 --methods gradnorm
# Input gradients: ODIN with eps > 0, Mahalanobis with m > 0 (synthetic Gaussians).
bench "${EFF[@]}" --batch 32 --images 64 --methods odin --epsilon-odin 0.002
bench "${EFF[@]}" --batch 32 --images 64 --methods mahalanobis
# bf16 storage (the CPU kernels compute in f32).
bench "${EFF[@]}" --batch 32 --images 256 --methods "$ALL" --dtype bf16

# BiT-S-R101x1 @480 (the paper's model and size).
bench "${BIT[@]}" --batch 8 --images 16 --methods "$ALL"
bench "${BIT[@]}" --batch 8 --images 32 --methods "$ALL" --source "$IMAGES"
bench "${BIT[@]}" --batch 8 --images 8 --methods odin --epsilon-odin 0.002
bench "${BIT[@]}" --batch 8 --images 8 --methods mahalanobis

# The demo's model @64.
bench --checkpoint checkpoints/demo/bit-demo.safetensors --image-size 64 --batch 50 --images 1000 --methods "$ALL"
