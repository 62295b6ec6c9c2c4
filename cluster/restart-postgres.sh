#!/usr/bin/env bash
# Restart the cluster's PostgreSQL the way a crash or a maintenance restart would hit a sweep:
# `-m fast` cuts every connection at once. Its log stays in .cluster/postgres/server.log (without
# -l the new server would write to this script's output, and hold a caller's pipe open for good).
set -euo pipefail
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

live_pid "$(pid_file postgres)" >/dev/null || die "the cluster's PostgreSQL is not running"
start=$EPOCHREALTIME
pg_ctl -l "$PG_DIR/server.log" -m fast -w -t 60 restart >/dev/null
log "PostgreSQL restarted in $(seconds_since "$start") s"
