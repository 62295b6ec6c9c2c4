# shellcheck shell=bash disable=SC2034 # the variables are for the scripts that source this file
# Shared by up.sh and down.sh: where the one-machine cluster keeps its state, and how a daemon we
# started is found again (a pid file per daemon, written by the daemon or by us).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=$ROOT/.cluster
ENV_FILE=$STATE/env
RUN=$STATE/run              # pid files of what up.sh started itself
MUNGE_DIR=$STATE/munge      # owned by munge: munged refuses a socket dir others can write
SLURM_DIR=$STATE/slurm
MARIADB_DIR=$STATE/mariadb  # owned by mysql
PG_DIR=$STATE/postgres      # owned by postgres: initdb and the server refuse to run as root
ARTIFACTS=$STATE/mlflow-artifacts
PG_BIN=/usr/lib/postgresql/15/bin
export SLURM_CONF=$SLURM_DIR/slurm.conf # clients and daemons read this one, not /etc/slurm

log() { printf '[cluster] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# A pid recorded in a file (postmaster.pid: first line), if that process is running.
live_pid() {
	local file=$1 pid
	[[ -s $file ]] || return 1
	pid=$(head -n1 "$file")
	[[ $pid =~ ^[0-9]+$ ]] && running "$pid" && echo "$pid"
}

# A zombie counts as gone: daemons are reaped by init, which may take a few seconds to do it.
running() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# Any process of group $1 still running.
group_running() { ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {f = 1} END {exit !f}'; }

# Stop the process (or, for a .pgid file, the process group) in a pid file: TERM, then KILL
# after $2 s.
stop_pid() {
	local file=$1 grace=${2:-15} pid target check=running
	pid=$(live_pid "$file") || {
		rm -f "$file"
		return 0
	}
	target=$pid
	if [[ $file == *.pgid ]]; then
		target=-$pid check=group_running
	fi
	kill -TERM -- "$target" 2>/dev/null
	for ((i = 0; i < grace * 10; i++)); do
		"$check" "$pid" || break
		sleep 0.1
	done
	if "$check" "$pid"; then kill -KILL -- "$target" 2>/dev/null; fi
	rm -f "$file"
}

# Run "$@" until it succeeds or $1 seconds pass; quiet.
wait_until() {
	local timeout=$1 start=$EPOCHREALTIME
	shift
	until "$@" >/dev/null 2>&1; do
		(($(elapsed_ms "$start") > timeout * 1000)) && return 1
		sleep 0.2
	done
}

elapsed_ms() {
	local now=$EPOCHREALTIME
	echo $(((${now/./} - ${1/./}) / 1000))
}

seconds_since() {
	local ms
	ms=$(elapsed_ms "$1")
	printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}

port_free() { [[ -z $(ss -Hltn "sport = :$1") ]]; }

# The first free TCP port from $1 on.
free_port() {
	local port=$1
	until port_free "$port"; do port=$((port + 1)); done
	echo "$port"
}

secret() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; } # no SIGPIPE (pipefail)

pg_ctl() { runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" "$@"; }

# Only the variables of .cluster/env, read without running anything else.
env_value() { sed -n "s/^export $1=//p" "$ENV_FILE" 2>/dev/null | tail -n1; }

# Where each part's pid is recorded (by the daemon itself, or by up.sh for the MLflow server).
pid_file() {
	case $1 in
	postgres) echo "$PG_DIR/data/postmaster.pid" ;;
	mlflow) echo "$RUN/mlflow.pgid" ;;
	munge) echo "$MUNGE_DIR/munged.pid" ;;
	mariadb) echo "$MARIADB_DIR/mariadbd.pid" ;;
	*) echo "$RUN/$1.pid" ;;
	esac
}

# The port a part got at the last fresh start (.cluster/ports).
last_port() { sed -n "s/^$1=//p" "$STATE/ports" 2>/dev/null; }

# The MLflow server on the cluster's PostgreSQL (needs MLFLOW_PASSWORD, PG_PORT, MLFLOW_PORT).
start_mlflow() {
	MLFLOW_START=$EPOCHREALTIME
	[[ -x $ROOT/.venv/bin/mlflow ]] || die "no .venv/bin/mlflow: run make install first"
	# The backend URI goes by environment, so its password is not on ps's command line. No job
	# execution: its background workers take CPU and outlive the server's SIGTERM.
	MLFLOW_BACKEND_STORE_URI="postgresql+psycopg://mlflow:$MLFLOW_PASSWORD@127.0.0.1:$PG_PORT/mlflow" \
		MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
		setsid "$ROOT/.venv/bin/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" \
		--workers 1 --artifacts-destination "$ARTIFACTS" >"$STATE/mlflow.log" 2>&1 </dev/null &
	echo $! >"$RUN/mlflow.pgid" # its own session: down.sh stops the whole group
}

wait_mlflow() {
	wait_until 120 curl -fsS "http://127.0.0.1:$MLFLOW_PORT/health" ||
		die "the MLflow server did not answer: see $STATE/mlflow.log"
	log "MLflow server ready in $(seconds_since "$MLFLOW_START") s (port $MLFLOW_PORT)"
}
