#!/usr/bin/env bash
# Spread one `gradnorm-tui eval` over a Slurm cluster: a job array with one
# task per shard (`eval --shard i/N`, each into its own store folder), then a
# merge job that starts when every shard succeeded (afterok) and joins them
# into one run in STORE. The merged run's summary equals the unsharded run's.
#
#   scripts/slurm-eval.sh [-n SHARDS] [-s STORE] [-b BIN] [-a "SBATCH ARGS"] [-w] -- EVAL ARGS...
#
#   -n SHARDS  array tasks (default 4)
#   -s STORE   store folder for the merged run (default runs); shard i
#              writes STORE/shard-i (on a file system every node sees)
#   -b BIN     the gradnorm-tui binary (default: gradnorm-tui on PATH)
#   -a ARGS    extra sbatch arguments for every job (partition, GPUs, time)
#   -w         wait for the merge job to finish (sbatch --wait)
#
# Example (8 GPU shards of the paper's EfficientNet benchmark):
#   scripts/slurm-eval.sh -n 8 -s /shared/runs -a "--partition gpu --gres gpu:1" -- \
#     --checkpoint ckpt.safetensors --id val_list.txt --id-root val --ood inat=iNaturalist ...
# Afterwards: gradnorm-tui report --store /shared/runs latest
set -euo pipefail

shards=4
store=runs
bin=$(command -v gradnorm-tui || true)
extra=""
wait_flag=""
while getopts "n:s:b:a:wh" opt; do
  case "$opt" in
    n) shards=$OPTARG ;;
    s) store=$OPTARG ;;
    b) bin=$OPTARG ;;
    a) extra=$OPTARG ;;
    w) wait_flag="--wait" ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "slurm-eval: no gradnorm-tui binary (give -b BIN)" >&2
  exit 2
fi
if ! [[ "$shards" =~ ^[1-9][0-9]*$ ]]; then
  echo "slurm-eval: -n wants a positive number, got $shards" >&2
  exit 2
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
mkdir -p "$store"
store=$(cd "$store" && pwd)
# The eval arguments, quoted for the job scripts.
args=$(printf '%q ' "$@")

# shellcheck disable=SC2086
array_id=$(sbatch --parsable $extra --job-name=gradnorm-shard --array="0-$((shards - 1))" \
  --output="$store/slurm-%A_%a.out" <<EOF
#!/usr/bin/env bash
set -euo pipefail
i=\$SLURM_ARRAY_TASK_ID
exec "$bin" eval $args --shard "\$i/$shards" --store "$store/shard-\$i" --out "$store/shard-\$i/out"
EOF
)
array_id=${array_id%%;*}

sources=""
for ((i = 0; i < shards; i++)); do
  sources+=" $(printf '%q' "$store/shard-$i")"
done
# shellcheck disable=SC2086
merge_id=$(sbatch --parsable $wait_flag $extra --job-name=gradnorm-merge \
  --dependency="afterok:$array_id" --kill-on-invalid-dep=yes \
  --output="$store/slurm-merge-%j.out" <<EOF
#!/usr/bin/env bash
set -euo pipefail
exec "$bin" merge --into $(printf '%q' "$store") $sources
EOF
)
merge_id=${merge_id%%;*}
echo "shards: job array $array_id ($shards tasks); merge: job $merge_id -> $store"
