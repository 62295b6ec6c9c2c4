"""The sweep loop: open (or resume) the study, ask -> suggest -> run the trial in its own
process -> tell, with MLflow bookkeeping and one progress line per trial."""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from src import tracking
from src.config import compose_config
from src.errors import ConfigError
from src.sweep_params import suggest
from src.sweep_spec import SweepSpec, build_pruner, build_sampler, method_of
from src.sweep_tracking import SweepRuns
from src.trial_runner import TrialJob, TrialOutcome, run_trial

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
RDB_SCHEMES = {"sqlite", "postgresql", "mysql"}
HEARTBEAT_S = 20


def _engine_kwargs(url: str) -> dict:
    # The trial process writes to the same SQLite file: wait for its lock rather than fail.
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def open_study(spec: SweepSpec, study_name: str, storage: str) -> optuna.Study:
    """Create the study, or load it to resume; the objectives must match the stored ones."""
    # Heartbeats are "experimental" and "meant for optimize()": we send them ourselves (ask/tell).
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    tracking.tracking_uri(storage)  # creates the folder of a relative sqlite:/// path
    if storage.split(":", 1)[0].split("+")[0] in RDB_SCHEMES:
        # Heartbeats (sent while a trial process runs) let a later run mark the trials of a
        # killed sweep as FAIL instead of leaving them RUNNING forever.
        storage = optuna.storages.RDBStorage(storage, heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S,
                                             engine_kwargs=_engine_kwargs(storage))
    try:
        existing = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        existing = None
    n_existing = len(existing.trials) if existing else 0
    if existing is not None:
        stored = [d.name.lower() for d in existing.directions]
        if stored != spec.directions:
            raise ConfigError([(f"study '{study_name}' in {storage} has directions {stored}, the sweep file "
                               f"says {spec.directions}; pick another study_name")])
    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                                sampler=build_sampler(spec, n_existing), pruner=build_pruner(spec.pruner),
                                directions=spec.directions)
    optuna.storages.fail_stale_trials(study)
    if n_existing == 0:  # known-good starting points run first (a fresh study only)
        for params in spec.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
    return study


def run_sweep(spec: SweepSpec, study_name: str, storage: str, n_trials: int | None = None,
              timeout: float | None = None, quiet: bool = False, overrides: list[str] = ()) -> optuna.Study:
    """Run trials until the study holds n_trials finished ones (or the timeout passes)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_trials = n_trials or spec.n_trials
    timeout = timeout if timeout is not None else spec.timeout
    base = compose_config([*spec.base, *overrides])
    uri = tracking.tracking_uri(base.logger.tracking_uri)
    study = open_study(spec, study_name, storage)
    runs = SweepRuns(uri, base.logger.experiment, base.logger.artifact_root)
    runs.start(spec, study_name, storage, n_trials)
    for key, value in {"sweep": spec.name, "mlflow_parent_run_id": runs.run_id, "mlflow_tracking_uri": uri,
                       "objectives": spec.objectives, "reports_root": str(base.paths.root)}.items():
        study.set_user_attr(key, value)
    progress = Progress(spec, study_name, n_trials)
    started, status = time.time(), "FAILED"
    deadline = started + timeout if timeout is not None else None
    trial_cap = _seconds(OmegaConf.select(base, "trainer.max_time", default=None))
    context = {"spec": spec, "study": study, "storage": storage, "runs": runs, "uri": uri, "quiet": quiet,
                   "overrides": [*spec.base, *overrides], "log_dir": Path(base.paths.root) / "sweeps" / study_name}
    try:
        while _finished(study) < n_trials:
            if timeout is not None and time.time() - started > timeout:
                print(f"[sweep {study_name}] timeout of {timeout:.0f}s reached; stopping", flush=True)
                break
            if getattr(study.sampler, "is_exhausted", lambda _: False)(study):
                print(f"[sweep {study_name}] grid exhausted; stopping", flush=True)
                break
            progress.line(study, one_trial(**context, max_time=_trial_budget(deadline, trial_cap)))
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        runs.finish(study, spec, status)
    return study


def _finished(study: optuna.Study) -> int:
    return sum(t.state in FINISHED for t in study.get_trials(deepcopy=False))


def _seconds(max_time) -> float | None:
    """Lightning's max_time as seconds: 'DD:HH:MM:SS' or a {days, hours, minutes, seconds} map."""
    if max_time is None:
        return None
    if isinstance(max_time, str):
        days, hours, minutes, seconds = (int(x) for x in max_time.split(":"))
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return sum(float(max_time.get(k, 0)) * f for k, f in
               (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1)))


def _trial_budget(deadline: float | None, trial_cap: float | None) -> float | None:
    """The sweep timeout is a wall budget: a trial may train only until it runs out, and never
    longer than the file's own per-trial trainer.max_time."""
    left = None if deadline is None else max(1.0, deadline - time.time())
    caps = [c for c in (left, trial_cap) if c is not None]
    return min(caps) if caps else None


def one_trial(spec, study, storage, runs, uri, quiet, overrides, log_dir,
              max_time: float | None = None) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    suggestion = suggest(trial, spec.space)
    method = suggestion.values.get(method_of(spec) or "", "")
    run_name = f"{study.study_name}-t{trial.number:03d}" + (f"-{method}" if method else "")
    tags = {"trial": str(trial.number), "study_name": study.study_name, "sweep": spec.name,
            "sweep_method": str(method)}
    log_path = str(log_dir / f"trial-{trial.number:04d}.log") if quiet else None
    job = TrialJob(
        study_name=study.study_name, storage=storage, trial_id=trial._trial_id, number=trial.number,
        overrides=[*overrides, *suggestion.overrides, *trial_settings(run_name, uri, quiet, max_time)],
        pruner=spec.pruner, prune=spec.prunes, monitor=spec.metrics[0],
        parent_run_id=runs.run_id, tags=tags, cwd=os.getcwd(), quiet=quiet, log_path=log_path)
    for key, value in {"method": method, "fixed": suggestion.fixed, "overrides": suggestion.overrides}.items():
        trial.set_user_attr(key, value)
    try:
        outcome = run_trial(job, heartbeat=_heartbeat(study, trial))
    except KeyboardInterrupt:  # Ctrl-C reaches the trial process too; do not leave it RUNNING
        study.tell(trial, state=TrialState.FAIL)
        raise
    check_objectives(outcome, spec)
    outcome.run_id = runs.record_trial(trial.number, outcome, run_name, tags, log_path)
    tell(study, trial, outcome, spec)
    frozen = study._storage.get_trial(trial._trial_id)
    runs.log_progress(trial.number, {"trial/value": frozen.values[0] if frozen.values else None,
                                     "trial/wall_s": outcome.wall_s})
    return frozen


def _heartbeat(study, trial):
    storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache wrapper
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.get_heartbeat_interval() is None:
        return None
    return lambda: storage.record_heartbeat(trial._trial_id)


def trial_settings(run_name: str, uri: str, quiet: bool, max_time: float | None = None) -> list[str]:
    """Per-trial overrides: no end summary or checkpoints (a sweep compares, it does not keep),
    the parent's MLflow store (the fork server's environment may be older than ours), and the
    time this trial may train (Lightning stops gracefully at max_time; the run is still measured)."""
    out = ["summary=false", "checkpoint.enabled=false", f"run_name={run_name}", f"logger.tracking_uri={uri}"]
    if max_time is not None:
        secs = int(max_time)  # Lightning's string form: a dict would arrive as a DictConfig
        out.append(f"++trainer.max_time=00:{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}")
    return out + (["trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false"] if quiet else [])


def check_objectives(outcome: TrialOutcome, spec: SweepSpec) -> None:
    """A trial that finished without a finite objective value counts as failed."""
    outcome.metrics = {k: float(v) for k, v in outcome.metrics.items() if math.isfinite(float(v))}
    missing = [m for m in spec.metrics if m not in outcome.metrics]
    if outcome.state == "COMPLETE" and missing:
        outcome.state, outcome.fail_reason = "FAIL", f"objective metric(s) {missing} missing from the trial"


def tell(study: optuna.Study, trial, outcome: TrialOutcome, spec: SweepSpec) -> None:
    """Record what happened in the trial's user attrs, then finish it with the right state."""
    metrics = outcome.metrics
    values = [metrics.get(m) for m in spec.metrics]
    attrs = {"metrics": metrics, "state": outcome.state, "run_id": outcome.run_id,
             "pruned_at_step": outcome.pruned_at_step, "fail_reason": outcome.fail_reason,
             "traceback": outcome.traceback, "startup_s": outcome.startup_s, "setup_s": outcome.setup_s, "wall_s": outcome.wall_s}
    for key, value in attrs.items():
        if value is not None:
            trial.set_user_attr(key, value)
    if outcome.state == "COMPLETE":
        study.tell(trial, values)
    else:
        study.tell(trial, state=TrialState[outcome.state])


class Progress:
    """One sweep-level line per finished trial: k/N, state, value, best so far, state counts."""

    def __init__(self, spec: SweepSpec, study_name: str, n_trials: int):
        self.spec, self.name, self.n = spec, study_name, n_trials

    def line(self, study: optuna.Study, trial) -> None:
        trials = study.get_trials(deepcopy=False)
        counts = {s: sum(t.state == s for t in trials) for s in FINISHED}
        state = trial.state.name + (f"@{trial.user_attrs['pruned_at_step']}"
                                    if trial.user_attrs.get("pruned_at_step") is not None else "")
        value = self._fmt(trial.values) if trial.values else trial.user_attrs.get("fail_reason", "")[:80]
        print(f"[sweep {self.name}] trial {sum(counts.values())}/{self.n} #{trial.number} "
              f"{trial.user_attrs.get('method', '')} {state} {value} ({trial.user_attrs.get('wall_s', 0):.0f}s)"
              f" | best {self._best(study)} | complete {counts[TrialState.COMPLETE]} "
              f"pruned {counts[TrialState.PRUNED]} failed {counts[TrialState.FAIL]}", flush=True)

    def _fmt(self, values) -> str:
        return " ".join(f"{m}={v:.4g}" for m, v in zip(self.spec.metrics, values))

    def _best(self, study: optuna.Study) -> str:
        if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            return "-"
        if len(self.spec.objectives) > 1:
            return f"pareto set of {len(study.best_trials)}"
        return f"#{study.best_trial.number} {self._fmt(study.best_trial.values)}"
