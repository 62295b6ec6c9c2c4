"""launcher=slurm: the sweep's workers as one SLURM job array, submitted through submitit.

Each array task runs the same driver loop as a local worker (src/sweep/workers.py) against the
shared storage (PostgreSQL: every node reaches it) and logs to the tracking server; the
submitting command only follows progress from the storage and can detach (follow=false), and
`python -m src.sweep status study_name=S` re-attaches from any machine. The job ids are kept
in the study's user attrs, so `status ... cancel=true` cancels them from anywhere.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from src.sweep import interrupts

JOBS_ATTR = "slurm_jobs"  # study user attr: {"array", "workers", "folder", "n_trials"}
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL"}
ENDED |= {"DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}
GONE = "GONE"  # no accounting, and squeue no longer lists the job: it ended
ENDED.add(GONE)


@dataclass
class SlurmResources:
    """What each worker job asks SLURM for (launcher.* settings)."""

    partition: str | None = None
    gpus_per_worker: int = 0
    cpus_per_worker: int | None = None
    mem_gb: float | None = None
    time_min: int = 60
    account: str | None = None
    qos: str | None = None
    sbatch: dict = field(default_factory=dict)  # any other sbatch option: {"constraint": "a100"}

    def submitit_parameters(self, workers: int, name: str) -> dict:
        extra = dict(self.sbatch)
        extra.update({k: v for k, v in (("account", self.account), ("qos", self.qos)) if v})
        params = {
            "job_name": f"sweep-{name}",
            "time": int(self.time_min),
            "array_parallelism": workers,
            "additional_parameters": extra,
        }
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_worker:
            params["gpus_per_node"] = int(self.gpus_per_worker)
        if self.cpus_per_worker:
            params["cpus_per_task"] = int(self.cpus_per_worker)
        if self.mem_gb:
            params["mem"] = f"{int(self.mem_gb * 1024)}M"
        return params


def launcher_problems(settings: dict, storage: str, slurm_only: list[str]) -> list[str]:
    """The launcher settings checked before anything runs (slurm_only: keys that need slurm)."""
    launcher = settings.get("launcher", "local")
    if launcher not in ("local", "slurm"):
        return [f"launcher={launcher!r}: must be local or slurm"]
    if launcher == "local":
        given = [key for key in slurm_only if key in settings]
        return [f"{', '.join(given)}: only with launcher=slurm"] if given else []
    return slurm_problems(storage)


def resources_from(settings: dict) -> SlurmResources | None:
    """launcher.* settings as what each worker job asks for (None: launcher=local)."""
    if settings.get("launcher", "local") != "slurm":
        return None
    return SlurmResources(
        partition=settings.get("launcher.partition"),
        gpus_per_worker=settings.get("launcher.gpus_per_worker", 0),
        cpus_per_worker=settings.get("launcher.cpus_per_worker"),
        mem_gb=settings.get("launcher.mem_gb"),
        time_min=settings.get("launcher.time_min", 60),
        account=settings.get("launcher.account"),
        qos=settings.get("launcher.qos"),
        sbatch=parse_sbatch(settings.get("launcher.sbatch", "")),
    )


def detached(study) -> bool:
    """A SLURM sweep whose jobs still run (the command stopped following): its report comes
    from `status` later."""
    record = study.user_attrs.get(JOBS_ATTR)
    return record is not None and not all_ended(job_states(record["array"]))


def parse_sbatch(text: str) -> dict:
    """launcher.sbatch='constraint=a100,exclusive': extra sbatch options (a bare name is a flag)."""
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        options[key.strip().lstrip("-")] = value.strip() if sep else True
    return options


def slurm_problems(storage: str) -> list[str]:
    problems = []
    if storage.startswith("sqlite"):
        problems.append(
            "launcher=slurm: the storage must be a database every node reaches "
            "(storage=postgresql+psycopg://... or FTSWEEP_STORAGE, see docs/cluster.md); "
            f"{storage.split('?')[0]} is a file on this machine"
        )
    if shutil.which("sbatch") is None:
        problems.append(
            "launcher=slurm: sbatch is not on PATH (on one machine: make cluster-up, then "
            "source .cluster/env)"
        )
    try:
        import submitit  # noqa: F401
    except ImportError:
        problems.append("launcher=slurm needs submitit: pip install submitit")
    return problems


def submit_workers(n: int, ctx, plan, resources: SlurmResources) -> dict:
    """Submit n worker tasks as one array; their ids go into the study's user attrs."""
    import submitit

    folder = (ctx.log_dir / "slurm").resolve()
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(**resources.submitit_parameters(n, ctx.study.study_name))
    from src.sweep.workers import worker_args

    columns = [[a] * n for a in worker_args(ctx, plan)]
    jobs = executor.map_array(slurm_worker, list(range(n)), *columns)
    record = {
        "array": jobs[0].job_id.split("_")[0],
        "workers": n,
        "folder": str(folder),
        "n_trials": plan.n_trials,
    }
    ctx.study.set_user_attr(JOBS_ATTR, record)
    return record


def slurm_worker(index: int, *args) -> None:
    """One array task: a local worker's driver loop, which also stops at a safe point on SIGUSR1
    (SLURM's warning before pre-emption or the time limit, `--signal=USR1@90` from submitit):
    its running trial is failed and re-queued, then the job requeues itself and its next run
    goes on with the study."""
    from src.sweep.workers import worker_main

    try:
        worker_main(index, *args, also_stop_on=(signal.SIGUSR1,))
    except SystemExit:
        if interrupts.received() == signal.SIGUSR1:
            requeue_this_job()
        raise


def requeue_this_job() -> None:
    env = os.environ
    job = env.get("SLURM_JOB_ID", "")
    if env.get("SLURM_ARRAY_JOB_ID"):
        job = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '0')}"
    print(f"[sweep] pre-empted: requeueing SLURM job {job}", flush=True)
    subprocess.run(["scontrol", "requeue", job], check=False, timeout=60)


def job_states(array_id: str) -> dict[str, str]:
    """Task id -> SLURM state. sacct knows ended jobs too; on a cluster without accounting
    (sacct fails) squeue is asked instead, which forgets a job soon after it ends: a job it no
    longer lists is GONE (ended, how is unknown)."""
    done = _run(["sacct", "-j", array_id, "-n", "-X", "-P", "-o", "JobID,State"])
    if done.returncode != 0:
        done = _run(["squeue", "-h", "-t", "all", "-j", array_id, "-o", "%i|%T"])
        if done.returncode != 0 or not done.stdout.strip():
            return {array_id: GONE}
    states = {}
    for line in done.stdout.splitlines():
        job, _, state = line.partition("|")
        if job and state:
            states[job] = state.split()[0]  # "CANCELLED by 0" -> CANCELLED
    return states


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


def all_ended(states: dict[str, str]) -> bool:
    pending_array = any("[" in job for job in states)  # "12_[0-3]": tasks not started yet
    return bool(states) and not pending_array and all(s in ENDED for s in states.values())


def cancel(record: dict) -> None:
    subprocess.run(["scancel", record["array"]], check=False)


def follow(study, spec, n_trials: int, record: dict, every_s: float = 2.0) -> bool:
    """Print each trial as it finishes (any worker) until every worker job has ended; True when
    they have, False when the user stopped following (Ctrl-C: the jobs keep running)."""
    from src.sweep.progress import Progress

    progress, shown = Progress(spec, study, n_trials), set()
    try:
        while True:
            for trial in study.get_trials(deepcopy=False):
                if trial.state.is_finished() and trial.number not in shown:
                    shown.add(trial.number)
                    progress.line(study, trial)
            if all_ended(job_states(record["array"])):
                return True
            time.sleep(every_s)
    except KeyboardInterrupt:
        return False
    finally:
        progress.close()


def detached_hint(study_name: str, storage_shown: str, record: dict) -> str:
    return (
        f"[sweep {study_name}] {record['workers']} worker job(s) in SLURM array {record['array']} "
        f"(logs: {record['folder']}). Follow: python -m src.sweep status study_name={study_name} "
        f"storage={storage_shown}   cancel: ... cancel=true"
    )
