#!/usr/bin/env bash
# Alternating before/after runs of paygate bench: gateway CPU per complete payment and per create,
# SQLite and PostgreSQL. Usage: alternate.sh ROUNDS OUTFILE
# BEFORE and AFTER: worktrees of the two commits, each with its own .venv (make venv).
# BEFORE_ARGS / AFTER_ARGS (optional): more bench options for one side only, e.g. AFTER_ARGS=--encrypted-card
# to measure the flow an older commit's bench drove (it did not tokenize) with a newer one.
# SCENARIOS (optional): which to run, default "payment create".
# PAUSE_PGID (optional): a process group to stop (SIGSTOP) during each bench run and resume
# (SIGCONT) right after, e.g. a long background job at nice 19 sharing the box; the trap resumes
# it whatever way the script ends.
# Each configuration (database, scenario) is run before then after back to back, so a pair shares
# the box's state of the moment; every run is one JSON line in OUTFILE, failed runs included.
set -u
ROUNDS=${1:-3}; OUT=${2:-results.jsonl}
declare -A TREE=([before]=${BEFORE:?worktree of the older commit} [after]=${AFTER:?worktree of the newer commit})
PAUSE_PGID=${PAUSE_PGID:-}
PG="psql -h 127.0.0.1 -U postgres -d test -q"

resume() { [ -n "$PAUSE_PGID" ] && kill -CONT -- "-$PAUSE_PGID" 2>/dev/null; return 0; }
pause() {
  # A group that is gone is not paused, and the run says so.
  if [ -n "$PAUSE_PGID" ] && kill -STOP -- "-$PAUSE_PGID" 2>/dev/null; then echo true; else echo false; fi
}
trap resume EXIT
trap 'resume; exit 130' INT TERM

for round in $(seq 1 "$ROUNDS"); do
  for db in sqlite postgresql; do
    for scenario in ${SCENARIOS:-payment create}; do
      for which in before after; do
        tree=${TREE[$which]}
        commit=$(git -C "$tree" rev-parse --short HEAD)
        args=(--spawn --duration 15 --warmup 3 --concurrency 32 --scenario "$scenario" --json --quiet)
        extra=$([ "$which" = before ] && echo "${BEFORE_ARGS:-}" || echo "${AFTER_ARGS:-}")
        [ "$scenario" = payment ] && [ -n "$extra" ] && args+=($extra)
        name=""
        if [ "$db" = postgresql ]; then
          name="pab_${which}_${round}_${scenario}"
          $PG -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
          args+=(--database-url "postgresql://127.0.0.1:5432/$name")
        fi
        started=$(date -u +%FT%TZ)
        paused=$(pause)
        result=$(cd "$tree" && PYTHONPATH="$tree/server:$tree/sdk:$tree/checkout" timeout 300 "$tree/.venv/bin/paygate" bench "${args[@]}" 2>/dev/null)
        resume
        echo "$result" | python3 -c "
import json, sys
d = json.load(sys.stdin)
cpu = {k: (v or {}).get('msPerOperation') for k, v in d['cpu'].items()}
t = d['throughput']
print(json.dumps({'run': $round, 'which': '$which', 'commit': '$commit', 'db': '$db', 'scenario': '$scenario',
  'started': '$started', 'backgroundPaused': $([ "$paused" = true ] && echo True || echo False),
  'gatewayMsPerOp': cpu['gateway'], 'databaseMsPerOp': cpu['database'], 'simulatorMsPerOp': cpu['simulator'],
  'loadgenMsPerOp': cpu['loadgen'], 'gatewayCores': d['cpu']['gateway']['cores'],
  'opsPerS': t['perSecond'], 'completed': t['completed'], 'failedFlows': t['failedFlows'],
  'windowSeconds': d['windowSeconds'], 'errors': sum(d['errors'].values()),
  'loadAverage1m': [d['loadAverage']['before'][0], d['loadAverage']['after'][0]]}))" >> "$OUT" \
          || echo "{\"run\":$round,\"which\":\"$which\",\"commit\":\"$commit\",\"db\":\"$db\",\"scenario\":\"$scenario\",\"started\":\"$started\",\"failed\":true}" >> "$OUT"
        tail -1 "$OUT"
        [ -n "$name" ] && $PG -c "DROP DATABASE IF EXISTS $name" >/dev/null
      done
    done
  done
done
