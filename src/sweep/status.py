"""`python -m src.sweep status study_name=S [storage=URL] [follow=false] [cancel=true]`: a sweep
whose workers run as SLURM jobs (launcher=slurm), seen from any machine that reaches its
storage: its trials so far and its jobs' states; then it follows the jobs until they end
(Ctrl-C stops following only), closes the sweep's MLflow parent run and writes the report.
cancel=true cancels the jobs instead (their running trials are failed and re-queued by the
next driver on this study)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import optuna

from src.errors import ConfigError, exit_on_config_error
from src.sweep import default_storage, slurm
from src.sweep.preflight.study import load_stored_study
from src.sweep.tracking import SweepRuns

KEYS = {"study_name", "storage", "follow", "cancel"}


def status_main(argv: list[str]) -> None:
    with exit_on_config_error():
        args = parse_args(argv)
        study = load_stored_study(args["study_name"], args.get("storage") or default_storage())
        record = study.user_attrs.get(slurm.JOBS_ATTR)
        if record is None:
            raise ConfigError(
                [
                    f"study '{study.study_name}' did not run with launcher=slurm: no jobs to "
                    f"follow (its report: python -m src.sweep report study_name={study.study_name})"
                ]
            )
    print(summary(study, record), flush=True)
    if args.get("cancel"):
        slurm.cancel(record)
        print(f"[sweep {study.study_name}] cancelled SLURM array {record['array']}", flush=True)
        return
    if args.get("follow", True) and slurm.follow(
        study, _spec_view(study), record["n_trials"], record
    ):
        finish(study)


def summary(study: optuna.Study, record: dict) -> str:
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    counts = ", ".join(f"{s.lower()} {states.count(s)}" for s in sorted(set(states))) or "none"
    jobs = slurm.job_states(record["array"])
    shown = ", ".join(f"{job} {state}" for job, state in sorted(jobs.items())) or "not known"
    return f"[sweep {study.study_name}] trials: {counts}; jobs: {shown}"


def finish(study: optuna.Study) -> None:
    """Every worker job ended: close the parent run (if still open) and write the report."""
    from src.sweep.report import write_report

    attrs = study.user_attrs
    runs = SweepRuns.attach(attrs["mlflow_tracking_uri"], attrs["mlflow_parent_run_id"])
    if runs.client.get_run(runs.run_id).info.status == "RUNNING":
        runs.finish(study, "FINISHED")
    write_report(study)


def _spec_view(study: optuna.Study) -> SimpleNamespace:
    """What the progress lines need of the sweep file, from the study (the file may be on
    another machine)."""
    objectives = study.user_attrs.get("objectives") or [{"metric": "value"}]
    return SimpleNamespace(objectives=objectives, metrics=[o["metric"] for o in objectives])


def parse_args(argv: list[str]) -> dict:
    args, problems = {}, []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in KEYS:
            problems.append(f"'{arg}': status takes {', '.join(sorted(KEYS))}")
        elif key in ("follow", "cancel"):
            if value.lower() not in ("true", "false"):
                problems.append(f"{key}={value!r}: must be true or false")
            args[key] = value.lower() == "true"
        else:
            args[key] = value
    if "study_name" not in args:
        problems.append("status needs study_name=S")
    if problems:
        raise ConfigError(problems)
    return args


if __name__ == "__main__":
    status_main(sys.argv[1:])
