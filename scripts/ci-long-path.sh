#!/usr/bin/env bash
# CI as CI runs it, from a fresh clone under a long folder name, RUNS times
# in a row: tests that depend on where the checkout sits (a path cut on
# screen, a relative `../shared`) or on chance show up here. Not part of CI.
#
#   bash scripts/ci-long-path.sh            # 5 runs
#   RUNS=1 bash scripts/ci-long-path.sh
#
# The clone sits beside a `shared` link to this checkout's ../shared, as on
# CI; its build folder is kept between runs (the first run builds).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
base=${BASE:-/tmp/a-long-folder-name-for-the-ci-check-$$}
mkdir -p "$base"
git clone -q . "$base/clone"
if [ -d ../shared ]; then ln -s "$(cd ../shared && pwd)" "$base/shared"; fi
trap 'rm -rf "$base"' EXIT
pass=0
for i in $(seq 1 "$RUNS"); do
  log="$base/run-$i.log"
  start=$(date +%s)
  if (cd "$base/clone" && CI=true bash .ci/run </dev/null >"$log" 2>&1); then
    status=green pass=$((pass + 1))
  else
    status=RED
  fi
  counts=$(grep -E '^test result:' "$log" | sed -E 's/test result: [a-zA-Z]+\. //; s/; finished.*//' | paste -sd '|' -)
  echo "run $i: $status in $(($(date +%s) - start)) s: $counts"
  [ "$status" = green ] || grep -E '^(---- |failures:|    [a-z_:]+$)|panicked' "$log" | head -20
done
echo "$pass of $RUNS green (clone at $base/clone)"
[ "$pass" = "$RUNS" ]
