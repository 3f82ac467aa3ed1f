#!/usr/bin/env bash
# Alternating before/after runs of paygate bench: gateway CPU per complete payment and per create,
# SQLite and PostgreSQL. Usage: alternate.sh ROUNDS OUTFILE
set -u
ROUNDS=${1:-3}; OUT=${2:-results.jsonl}
# BEFORE and AFTER: worktrees of the two commits, each with its own .venv (make venv).
declare -A TREE=([before]=${BEFORE:?worktree of the older commit} [after]=${AFTER:?worktree of the newer commit})
for round in $(seq 1 "$ROUNDS"); do
  for which in before after; do
    tree=${TREE[$which]}
    for db in sqlite postgresql; do
      for scenario in payment create; do
        args=(--spawn --duration 15 --warmup 3 --concurrency 32 --scenario "$scenario" --json --quiet)
        if [ "$db" = postgresql ]; then
          name="pab_${which}_${round}_${scenario}"
          psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
          args+=(--database-url "postgresql://127.0.0.1:5432/$name")
        fi
        result=$(cd "$tree" && PYTHONPATH="$tree/server:$tree/sdk:$tree/checkout" timeout 300 "$tree/.venv/bin/paygate" bench "${args[@]}" 2>/dev/null)
        echo "$result" | python3 -c "
import json,sys
d=json.load(sys.stdin)
print(json.dumps({'round':$round,'which':'$which','db':'$db','scenario':'$scenario',
  'gatewayMsPerOp':d['cpu']['gateway']['msPerOperation'],'opsPerS':d.get('throughput',{}).get('perSecond') if isinstance(d.get('throughput'),dict) else d.get('throughput'),
  'errors':d.get('errors')}))" >> "$OUT" || echo "{\"round\":$round,\"which\":\"$which\",\"db\":\"$db\",\"scenario\":\"$scenario\",\"failed\":true}" >> "$OUT"
        tail -1 "$OUT"
        [ "$db" = postgresql ] && psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $name" >/dev/null
      done
    done
  done
done
