#!/usr/bin/env bash
# Take the cluster's MLflow server away for N seconds (default 30) and bring it back, the way a
# restart or a network cut hits running trials: connections are refused meanwhile. Prints the
# seconds it was unreachable (stop to /health answering again).
#   cluster/outage-mlflow.sh [SECONDS]
set -euo pipefail
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOWN_S=${1:-30}
[[ $DOWN_S =~ ^[0-9]+$ ]] || die "usage: cluster/outage-mlflow.sh [SECONDS] (a whole number)"
live_pid "$(pid_file mlflow)" >/dev/null || die "the cluster's MLflow server is not running"
# shellcheck source=/dev/null
source "$STATE/credentials"
PG_PORT=$(last_port PG_PORT)
MLFLOW_PORT=$(last_port MLFLOW_PORT)
start=$EPOCHREALTIME
stop_pid "$(pid_file mlflow)" 30
log "MLflow server stopped; starting it again in $DOWN_S s"
sleep "$DOWN_S"
start_mlflow
wait_mlflow
seconds_since "$start"
echo
