#!/usr/bin/env bash
# make cluster-up: this machine as a small cluster, on 127.0.0.1 only, all state under .cluster/.
#   cluster/up.sh         munge, SLURM (slurmctld, slurmd, slurmdbd on MariaDB), PostgreSQL 15,
#                         the MLflow server on PostgreSQL with proxied artifacts
#   cluster/up.sh mlflow  PostgreSQL and the MLflow server only (make mlflow-server)
# Installs missing Debian packages, waits until each part answers, writes .cluster/env (export
# lines) and prints it. When everything asked for is up already it only prints the env; anything
# else is a fresh start: whatever is left of ours is stopped, SLURM, munge and accounting state
# are wiped (job ids restart at 1). PostgreSQL's data (studies, MLflow runs) and the artifacts
# stay until `cluster/down.sh --purge`.
set -euo pipefail
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE=${1:-all}
case $MODE in
all) PARTS=(postgres mlflow munge mariadb slurmdbd slurmctld slurmd) ;;
mlflow) PARTS=(postgres mlflow) ;;
*) die "usage: cluster/up.sh [all|mlflow]" ;;
esac
PACKAGES=(postgresql)
[[ $MODE == all ]] && PACKAGES+=(munge slurm-wlm slurmdbd mariadb-server)

main() {
	[[ $EUID -eq 0 ]] || die "run as root: daemons are started as their own users (runuser)"
	if all_up; then
		log "already up (${PARTS[*]})"
		cat "$ENV_FILE"
		return
	fi
	local start=$EPOCHREALTIME
	"$ROOT/cluster/down.sh" --quiet
	install_packages
	fresh_state
	start_postgres
	start_mlflow
	if [[ $MODE == all ]]; then
		start_munge
		start_mariadb
		start_slurm
	fi
	wait_mlflow
	write_env
	log "all up in $(seconds_since "$start") s; the environment (also in $ENV_FILE):"
	cat "$ENV_FILE"
}

all_up() {
	[[ -s $ENV_FILE ]] || return 1
	[[ $MODE == mlflow || -n $(env_value SLURM_CONF) ]] || return 1
	local part
	for part in "${PARTS[@]}"; do
		live_pid "$(pid_file "$part")" >/dev/null || return 1
	done
	"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$(env_value FTSWEEP_PG_PORT)" &&
		curl -fsS "$(env_value MLFLOW_TRACKING_URI)/health" >/dev/null &&
		{ [[ $MODE == mlflow ]] || scontrol ping >/dev/null; }
}

install_packages() {
	local missing=() pkg
	for pkg in "${PACKAGES[@]}"; do
		dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	log "installing ${missing[*]}"
	# Packages must not start system copies of these daemons: ours run from .cluster/.
	local policy=/usr/sbin/policy-rc.d added=""
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
	fi
	local start=$EPOCHREALTIME
	if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		"${missing[@]}" >/dev/null; }; then
		[[ -z $added ]] || rm -f "$policy"
		die "apt-get could not install ${missing[*]}"
	fi
	[[ -z $added ]] || rm -f "$policy"
	log "installed in $(seconds_since "$start") s"
}

fresh_state() {
	rm -rf "$RUN" "$SLURM_DIR" "$MUNGE_DIR" "$MARIADB_DIR" "$ENV_FILE"
	mkdir -p "$RUN" "$SLURM_DIR/state" "$SLURM_DIR/spool" "$ARTIFACTS"
	chmod 755 "$STATE"
	if [[ ! -s $STATE/credentials ]]; then # kept with PostgreSQL's data, which uses them
		rm -rf "$PG_DIR"                      # data whose passwords are lost is of no use
		(
			umask 077
			printf 'OPTUNA_PASSWORD=%s\nMLFLOW_PASSWORD=%s\n' "$(secret)" "$(secret)" >"$STATE/credentials"
		)
	fi
	# shellcheck source=/dev/null
	source "$STATE/credentials"
	PG_PORT=$(prefer_port "$(last_port PG_PORT)" 5433)
	MLFLOW_PORT=$(prefer_port "$(last_port MLFLOW_PORT)" 5050)
	printf 'PG_PORT=%s\nMLFLOW_PORT=%s\n' "$PG_PORT" "$MLFLOW_PORT" >"$STATE/ports"
}

# The port used last time if it is free (the env stays the same), else the first free from $2.
prefer_port() {
	if [[ -n $1 ]] && port_free "$1"; then echo "$1"; else free_port "$2"; fi
}

start_postgres() {
	local start=$EPOCHREALTIME created=""
	if [[ ! -s $PG_DIR/data/PG_VERSION ]]; then
		rm -rf "$PG_DIR" && mkdir -p "$PG_DIR/data" "$PG_DIR/run"
		chown -R postgres:postgres "$PG_DIR" && chmod 700 "$PG_DIR/data"
		runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -E UTF8 \
			--auth-local=trust --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1 ||
			die "initdb failed: see $PG_DIR/initdb.log"
		created=1
	fi
	# synchronous_commit=off: commits do not wait for the disk (fast, and a crash loses at most
	# the last moment's writes, never consistency). pg_ctl restart reuses these options.
	pg_ctl -l "$PG_DIR/server.log" -w -t 60 start -o "-p $PG_PORT -k $PG_DIR/run \
-c listen_addresses=127.0.0.1 -c synchronous_commit=off -c max_connections=200" >/dev/null ||
		die "PostgreSQL did not start: see $PG_DIR/server.log"
	wait_until 30 "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL not ready"
	if [[ -n $created ]]; then create_databases; fi
	log "PostgreSQL ready in $(seconds_since "$start") s (port $PG_PORT)"
}

create_databases() {
	local db password
	for db in optuna mlflow; do
		password=OPTUNA_PASSWORD
		[[ $db == mlflow ]] && password=MLFLOW_PASSWORD
		psql_admin -c "CREATE ROLE $db LOGIN PASSWORD '${!password}'" \
			-c "CREATE DATABASE $db OWNER $db"
	done
}

psql_admin() { psql -q -v ON_ERROR_STOP=1 -h "$PG_DIR/run" -p "$PG_PORT" -U postgres "$@" >/dev/null; }

start_munge() {
	local start=$EPOCHREALTIME
	mkdir -p "$MUNGE_DIR" && chown munge:munge "$MUNGE_DIR" && chmod 755 "$MUNGE_DIR"
	runuser -u munge -- mungekey -c -k "$MUNGE_DIR/munge.key"
	runuser -u munge -- munged --socket="$MUNGE_DIR/munge.socket.2" \
		--key-file="$MUNGE_DIR/munge.key" --pid-file="$MUNGE_DIR/munged.pid" \
		--log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed"
	wait_until 10 munge_works || die "munge does not answer: see $MUNGE_DIR/munged.log"
	log "munge ready in $(seconds_since "$start") s"
}

munge_works() { munge -S "$MUNGE_DIR/munge.socket.2" -n | unmunge -S "$MUNGE_DIR/munge.socket.2"; }

start_mariadb() {
	local start=$EPOCHREALTIME
	MARIADB_PORT=$(free_port 3307)
	MARIADB_PASSWORD=$(secret)
	mkdir -p "$MARIADB_DIR/data" && chown -R mysql:mysql "$MARIADB_DIR"
	mariadb-install-db --no-defaults --user=mysql --datadir="$MARIADB_DIR/data" \
		--auth-root-authentication-method=socket --skip-test-db >"$MARIADB_DIR/install.log" 2>&1 ||
		die "mariadb-install-db failed: see $MARIADB_DIR/install.log"
	setsid mariadbd --no-defaults --user=mysql --datadir="$MARIADB_DIR/data" \
		--socket="$MARIADB_DIR/mysqld.sock" --pid-file="$MARIADB_DIR/mariadbd.pid" \
		--bind-address=127.0.0.1 --port="$MARIADB_PORT" --skip-name-resolve \
		--log-error="$MARIADB_DIR/error.log" --innodb-lock-wait-timeout=900 \
		>/dev/null 2>&1 </dev/null &
	wait_until 60 mariadb-admin --no-defaults --socket="$MARIADB_DIR/mysqld.sock" ping ||
		die "MariaDB did not start: see $MARIADB_DIR/error.log"
	mariadb --no-defaults --socket="$MARIADB_DIR/mysqld.sock" -e \
		"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$MARIADB_PASSWORD';
		 GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
	log "MariaDB ready in $(seconds_since "$start") s (port $MARIADB_PORT)"
}

start_slurm() {
	local start=$EPOCHREALTIME
	render_slurm_conf
	slurmdbd || die "slurmdbd did not start: see $SLURM_DIR/slurmdbd.log"
	wait_until 30 sacctmgr -n list cluster || die "slurmdbd not ready: see $SLURM_DIR/slurmdbd.log"
	sacctmgr -i add cluster ftsweep >/dev/null
	log "slurmdbd ready in $(seconds_since "$start") s"
	start=$EPOCHREALTIME
	slurmctld -f "$SLURM_CONF" || die "slurmctld did not start: see $SLURM_DIR/slurmctld.log"
	slurmd -f "$SLURM_CONF" || die "slurmd did not start: see $SLURM_DIR/slurmd.log"
	wait_until 60 node_idle || die "the node did not come up: see $SLURM_DIR/slurmd.log"
	timeout 60 srun -t 1 hostname >/dev/null || die "a test srun failed: see $SLURM_DIR/"
	log "slurmctld + slurmd ready (test srun ran) in $(seconds_since "$start") s"
}

node_idle() { [[ $(sinfo -h -o %t) == idle ]]; }

render_slurm_conf() {
	local ctld node
	ctld=$(free_port 6817)
	node=$(slurmd -C | head -n1) # NodeName=... CPUs=... RealMemory=... of this machine
	render slurm.conf HOST="$(hostname -s)" CTLD_PORT="$ctld" SLURMD_PORT="$(free_port $((ctld + 1)))" \
		DBD_PORT="$(free_port $((ctld + 2)))" MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2" \
		SLURM_DIR="$SLURM_DIR" RUN="$RUN" NODE="$node"
	render slurmdbd.conf DBD_PORT="$(sed -n 's/^AccountingStoragePort=//p' "$SLURM_CONF")" \
		MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2" RUN="$RUN" SLURM_DIR="$SLURM_DIR" \
		MARIADB_PORT="$MARIADB_PORT" MARIADB_PASSWORD="$MARIADB_PASSWORD"
	chmod 600 "$SLURM_DIR/slurmdbd.conf" # slurmdbd refuses a readable one (it holds a password)
}

# render NAME KEY=VALUE...: cluster/NAME.in with @KEY@ replaced, into .cluster/slurm/NAME.
render() {
	local out=$SLURM_DIR/$1 pair
	cp "$ROOT/cluster/$1.in" "$out"
	for pair in "${@:2}"; do
		sed -i "s|@${pair%%=*}@|${pair#*=}|g" "$out"
	done
}

write_env() {
	(
		umask 077 # it holds the database passwords
		{
			echo "# written by cluster/up.sh; source it: . .cluster/env"
			echo "export FTSWEEP_STORAGE=postgresql+psycopg://optuna:$OPTUNA_PASSWORD@127.0.0.1:$PG_PORT/optuna"
			echo "export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT"
			echo "export FTSWEEP_PG_PORT=$PG_PORT"
			echo "export FTSWEEP_PGDATA=$PG_DIR/data"
			echo "export FTSWEEP_PG_BIN=$PG_BIN"
			if [[ $MODE == all ]]; then echo "export SLURM_CONF=$SLURM_CONF"; fi
		} >"$ENV_FILE"
	)
}

main
