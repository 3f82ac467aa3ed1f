#!/usr/bin/env bash
# PostgreSQL payment runs of paygate bench on variants of the migrated schema, alternating
# trees and variants round by round: what one schema choice costs the database.
# Usage: schema_variants.sh ROUNDS OUTFILE VARIANT...   (run from a checkout with a .venv)
#   base       the schema as migrated (the current partition and 2 ahead, and DEFAULT)
#   partsN     N more (empty) change-log partitions, as retention keeps them
#   nohot      without the indexes on payment_intents.status (ix_payment_intents_status_created,
#              ix_payment_intents_held), so a status change can be an in-place (HOT) update
# TREES: checkouts to run (default: this one), each with its code on PYTHONPATH and this .venv.
# PAUSE_PGID: a process group stopped during each run (e.g. the long simulation).
set -u
ROUNDS=$1; OUT=$2; shift 2
VENV=$(cd "$(dirname "$0")/../.." && pwd)/.venv
TREES=${TREES:-$(cd "$(dirname "$0")/../.." && pwd)}
PG="psql -h 127.0.0.1 -U postgres -q"
resume() { [ -n "${PAUSE_PGID:-}" ] && kill -CONT -- "-$PAUSE_PGID" 2>/dev/null; return 0; }
trap resume EXIT
trap 'resume; exit 130' INT TERM
for round in $(seq 1 "$ROUNDS"); do
  for variant in "$@"; do
    for tree in $TREES; do
      name="sv_${variant}_${round}"; url="postgresql://127.0.0.1:5432/$name"
      code="$tree/server:$tree/sdk:$tree/checkout"
      $PG -d test -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" 2>/dev/null
      PAYGATE_DATABASE_URL=$url PYTHONPATH=$code "$VENV/bin/paygate" db upgrade >/dev/null || exit 1
      case $variant in
        base) ;;
        nohot) $PG -d "$name" -c "DROP INDEX ix_payment_intents_status_created" -c "DROP INDEX ix_payment_intents_held" ;;
        parts*) for i in $(seq 3 $((${variant#parts} + 2))); do
                  echo "CREATE TABLE change_log_p$(printf %015d $((i * 1000000))) PARTITION OF change_log
                        FOR VALUES FROM ($((i * 1000000))) TO ($(((i + 1) * 1000000)));"
                done | $PG -d "$name" ;;
        *) echo "unknown variant $variant" >&2; exit 2 ;;
      esac
      [ -n "${PAUSE_PGID:-}" ] && kill -STOP -- "-$PAUSE_PGID" 2>/dev/null
      result=$(cd "$tree" && PYTHONPATH=$code timeout 300 "$VENV/bin/paygate" bench --spawn --database-url "$url" \
               --duration 15 --warmup 3 --concurrency 32 --scenario payment --json --quiet 2>/dev/null)
      resume
      echo "$result" | python3 -c "
import json, sys
d = json.load(sys.stdin); c = d['cpu']; t = d['throughput']
print(json.dumps({'run': $round, 'variant': '$variant', 'commit': '$(git -C "$tree" rev-parse --short HEAD)',
  'gatewayMsPerOp': c['gateway']['msPerOperation'], 'databaseMsPerOp': c['database']['msPerOperation'],
  'opsPerS': t['perSecond'], 'failedFlows': t['failedFlows']}))" | tee -a "$OUT"
      $PG -d test -c "DROP DATABASE IF EXISTS $name"
    done
  done
done
