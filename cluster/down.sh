#!/usr/bin/env bash
# make cluster-down: stop exactly what cluster/up.sh started (found by its pid files), SLURM jobs
# first: `scontrol shutdown` alone would leave running jobs behind.
#   cluster/down.sh          stop; PostgreSQL's data and the MLflow artifacts stay in .cluster/
#   cluster/down.sh --purge  stop, then delete .cluster/ (studies, runs, artifacts)
#   cluster/down.sh --quiet  (up.sh) no message when nothing was running
set -uo pipefail # no -e: one part failing to stop must not leave the others running
# shellcheck source=cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PURGE="" QUIET=""
for arg in "$@"; do
	case $arg in
	--purge) PURGE=1 ;;
	--quiet) QUIET=1 ;;
	*) die "usage: cluster/down.sh [--purge]" ;;
	esac
done

main() {
	local stopped=() part start
	cancel_jobs
	# Reverse start order: SLURM's daemons before their accounting and auth.
	for part in slurmd slurmctld slurmdbd mariadb munge mlflow postgres; do
		live_pid "$(pid_file "$part")" >/dev/null || continue
		start=$EPOCHREALTIME
		if [[ $part == postgres ]]; then
			pg_ctl -m fast -w stop >/dev/null || stop_pid "$(pid_file postgres)" 30
		else
			stop_pid "$(pid_file "$part")" 30
		fi
		stopped+=("$part $(seconds_since "$start")s")
	done
	rm -f "$ENV_FILE" # tests and users take its presence to mean "the cluster is up"
	if ((${#stopped[@]})); then
		log "stopped: $(IFS=,; echo "${stopped[*]}")"
	elif [[ -z $QUIET ]]; then
		log "nothing of ours was running"
	fi
	if [[ -n $PURGE ]]; then
		rm -rf "$STATE"
		log "deleted $STATE"
	fi
}

# Cancel every job of our slurmctld and wait until none is left (SIGKILL comes after KillWait).
cancel_jobs() {
	live_pid "$(pid_file slurmctld)" >/dev/null && [[ -s $SLURM_CONF ]] || return 0
	local jobs
	jobs=$(timeout 10 squeue -h -o %A 2>/dev/null) || return 0
	[[ -n $jobs ]] || return 0
	local start=$EPOCHREALTIME
	# shellcheck disable=SC2086 # one job id per word
	scancel $jobs
	wait_until 60 no_jobs || log "jobs still listed after 60 s; stopping SLURM anyway"
	log "cancelled SLURM jobs ${jobs//$'\n'/ } in $(seconds_since "$start") s"
}

no_jobs() { [[ -z $(squeue -h -o %A -t PD,R,CG,S 2>/dev/null) ]]; }

main
