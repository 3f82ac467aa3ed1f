#!/usr/bin/env bash
# The long simulation run (docs/reliability.md, "The long run"): seeds FROM..TO-1 in pieces
# of STEP, each piece's JSON summary appended to OUT with the commit it ran on. A piece
# already in OUT is skipped, so a run that was stopped resumes where it stopped.
#   docs/perf/simulate_long.sh 0 1000000        (JOBS=2 STEP=2000 OUT=long-simulation.jsonl)
set -euo pipefail
from=${1:-0}
to=${2:-1000000}
step=${STEP:-2000}
out=${OUT:-long-simulation.jsonl}
jobs=${JOBS:-2}
paygate=${PAYGATE:-paygate}
commit=$(git -C "$(dirname "$0")" rev-parse --short HEAD)
for ((start = from; start < to; start += step)); do
  if [ -f "$out" ] && grep -q "\"start\": $start," "$out"; then
    continue
  fi
  count=$((to - start < step ? to - start : step))
  # Exit status 1 means a seed broke an invariant: the JSON says which; carry on.
  report=$("$paygate" simulate --seeds "$count" --start "$start" --jobs "$jobs" --json 2>/dev/null) || true
  if [ -z "$report" ]; then  # killed (or it crashed): nothing to record, the piece runs again next time
    echo "seeds $start..$((start + count - 1)): no report" >&2
    exit 1
  fi
  echo "{\"start\": $start, \"seeds\": $count, \"commit\": \"$commit\", \"report\": $report}" >> "$out"
done
