#!/usr/bin/env bash
# GradNorm of an earlier layer's weight: ours (batched, `bench --methods
# gradnorm:layer=...`, batch 8 and 32) against the paper's loop in PyTorch
# (batch 1, full backward; scripts/bench_gradnorm_layer.py) on this machine,
# random weights and synthetic inputs, with each process's peak resident
# memory. BiT-S-R101x1 @480 and ResNet-50 @224, the last block's 1x1 conv.
#
#   PYTHON=/path/to/venv/bin/python PAPER_REPO=/tmp/gradnorm_ood \
#     bash scripts/bench-gradnorm-layer.sh [path/to/gradnorm-tui]
#
# PAPER_REPO: a checkout of deeplearning-wisc/gradnorm_ood (its resnetv2.py).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/gradnorm-tui}
PYTHON=${PYTHON:-python3}
PAPER_REPO=${PAPER_REPO:-/tmp/gradnorm_ood}
IMAGES=${IMAGES:-32}
TORCH_IMAGES=${TORCH_IMAGES:-8}

ours() { # model size layer batch -> "img/s peak_MiB"
  local out
  out=$( { /usr/bin/time -f 'PEAK %M' "$BIN" bench --model "$1" --image-size "$2" \
    --batch "$4" --images "$IMAGES" --methods "gradnorm:layer=$3" --device cpu --json; } 2>&1)
  python3 - "$out" <<'EOF'
import json, sys
lines = sys.argv[1].splitlines()
j = json.loads(next(l for l in lines if l.startswith("{")))
peak = int(next(l for l in lines if l.startswith("PEAK")).split()[1]) / 1024
print(f"{j['end_to_end_img_per_s']:.3f} {peak:.0f}")
EOF
}

torch() { # model size layer -> "img/s peak_MiB"
  "$PYTHON" scripts/bench_gradnorm_layer.py --model "$1" --size "$2" --layer "$3" \
    --images "$TORCH_IMAGES" --paper-repo "$PAPER_REPO" |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.3f %.0f" % (j["img_per_s"], j["peak_rss_mib"]))'
}

printf '%-14s %-5s %-26s %-26s %-26s %s\n' model size "ours b8 (img/s, MiB)" "ours b32 (img/s, MiB)" \
  "paper loop (img/s, MiB)" "ratio b8 / b32"
for row in "BiT-S-R101x1 480 body.block4.unit03.conv3" "resnet50 224 layer4.2.conv3"; do
  set -- $row
  read -r o8 m8 < <(ours "$1" "$2" "$3" 8)
  read -r o32 m32 < <(ours "$1" "$2" "$3" 32)
  read -r t mt < <(torch "$1" "$2" "$3")
  printf '%-14s %-5s %-26s %-26s %-26s %s\n' "$1" "$2" "$o8, $m8" "$o32, $m32" "$t, $mt" \
    "$(python3 -c "print(f'{$o8/$t:.1f}x / {$o32/$t:.1f}x')")"
done
