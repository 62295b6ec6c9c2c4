"""Faults inside trials (OOM, divergence, kill -9, bugs), injected with +fault=... so the real
mechanisms fire: a real allocator failure, a real NaN loss, a real SIGKILL, a real exception."""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient
from tiny_runs import TINY_TRIALS  # tests/sweep is on sys.path

from src.sweep import SweepAborted, load_spec, main, run_sweep
from src.sweep.outcomes import reason_of_exception, reason_of_exit

TINY = [
    *TINY_TRIALS,
    "data.batch_size=16",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
]
SWEEP = """
base: {base}
space:
  lr: {{type: float, low: 1e-4, high: 1e-2, log: true, path: optim.lr}}
sampler: {{name: tpe, seed: 0}}
pruner: {{name: none}}
objectives: [{{metric: val/acc, direction: maximize}}]
n_trials: 2
"""


def sweep(sweep_env, fault: str, name: str, extra: str = "", n_trials: int = 2, **kwargs):
    text = SWEEP.format(base=TINY).replace("n_trials: 2", f"n_trials: {n_trials}") + extra
    path, storage, overrides = sweep_env(text, name=name)
    overrides = [*overrides, f"+fault={fault}"]
    return run_sweep(
        load_spec(path, overrides), name, storage, quiet=True, overrides=overrides, **kwargs
    )


def child_runs(store: str, study: optuna.Study) -> list:
    client = MlflowClient(store)
    parent = study.user_attrs["mlflow_parent_run_id"]
    runs = client.search_runs([client.get_run(parent).info.experiment_id])
    return [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]


def test_oom_is_pruned_infeasible_and_the_sweep_goes_on(sweep_env, store):
    study = sweep(sweep_env, "oom_at_step_2", "oom")
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]  # both ran: no stop
    for trial in study.trials:
        assert trial.user_attrs["reason"] == "oom"
        assert "can't allocate memory" in trial.user_attrs["fail_reason"]
        # Optuna's constraint: the sampler now treats this region as infeasible (the estimate
        # said it fits the RAM: the memory constraint is satisfied, the real run was not).
        assert trial.constraints["oom"] == 1.0 and trial.constraints["memory"] <= 0
    runs = child_runs(store, study)
    assert len(runs) == 2
    assert {(r.info.status, r.data.tags["reason"]) for r in runs} == {("FAILED", "oom")}


def test_oom_retry_shrinks_the_micro_batch_and_keeps_the_effective_batch(sweep_env, store):
    study = sweep(
        sweep_env, "oom_at_step_2_if_batch_gt_8", "retry", n_trials=1, extra="oom: {retry: true}\n"
    )
    [trial] = study.trials
    assert trial.state.name == "COMPLETE" and trial.user_attrs["reason"] == "complete"
    retry = trial.user_attrs["oom_retry"]
    # The estimate picks the micro-batch (at most 80% of the failed one's memory); the
    # accumulation keeps 16 rows per optimizer step.
    batch, accumulate = (int(o.split("=")[1]) for o in retry["overrides"])
    assert batch < 16 and batch * accumulate == 16
    assert retry["overrides"] == [
        f"data.batch_size={batch}",
        f"trainer.accumulate_grad_batches={accumulate}",
    ]
    assert "can't allocate memory" in retry["first_fail_reason"]
    runs = {r.data.tags["oom_retry"]: r for r in child_runs(store, study)}
    assert (
        runs["first attempt"].info.status == "FAILED"
        and runs["first attempt"].data.tags["reason"] == "oom"
    )
    assert runs["retry"].info.status == "FINISHED"
    assert runs["retry"].data.params["data.batch_size"] == str(batch)
    assert runs["retry"].data.params["trainer.accumulate_grad_batches"] == str(accumulate)
    assert trial.user_attrs["run_id"] == runs["retry"].info.run_id


def test_divergence_stops_the_trial_at_once_as_pruned_nan(sweep_env, store):
    study = sweep(sweep_env, "nan_at_step_2", "nan", n_trials=1)
    [trial] = study.trials
    assert trial.state.name == "PRUNED" and trial.user_attrs["reason"] == "nan"
    # NaN weights at the start of step 2: its loss is NaN and the run stops right there, not
    # after the budget of 4 steps.
    assert "train/loss is nan at step 2" in trial.user_attrs["fail_reason"]
    [run] = child_runs(store, study)
    assert run.info.status == "FAILED" and run.data.tags["reason"] == "nan"
    assert (
        max(m.step for m in MlflowClient(store).get_metric_history(run.info.run_id, "train/loss"))
        <= 2
    )


def test_a_killed_trial_process_fails_as_killed_and_the_sweep_goes_on(sweep_env, store):
    study = sweep(sweep_env, "sigkill_at_step_2", "kill9")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert {t.user_attrs["reason"] for t in study.trials} == {"killed"}
    assert "SIGKILL" in study.trials[0].user_attrs["fail_reason"]
    runs = child_runs(store, study)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"KILLED"}


def test_a_bug_stops_the_sweep_with_its_traceback_unless_max_failures_allows(
    sweep_env, store, capsys
):
    with pytest.raises(SweepAborted) as err:
        sweep(sweep_env, "error_at_step_1", "bug", n_trials=3)
    assert "injected bug at step 1" in str(err.value) and "trial traceback (tail)" in str(err.value)
    assert "src/train/faults.py" in str(err.value)  # the frames, not only the message
    assert "max_failures" in str(err.value)
    study = optuna.load_study(study_name="bug", storage=sweep_env("", name="unused")[1])
    assert [(t.state.name, t.user_attrs["reason"]) for t in study.trials] == [("FAIL", "error")]
    [run] = child_runs(store, study)
    assert run.info.status == "FAILED"
    parent = MlflowClient(store).get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "FAILED"

    # One more failure allowed: the second bug stops it.
    path, storage, overrides = sweep_env(
        SWEEP.format(base=TINY).replace("n_trials: 2", "n_trials: 3"), name="bug2"
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                f"sweep={path}",
                f"storage={storage}",
                "max_failures=1",
                "report=false",
                *overrides,
                "+fault=error_at_step_1",
            ]
        )
    stderr = capsys.readouterr().err
    assert (
        exit_.value.code == 1 and "injected bug" in stderr and "2 so far, max_failures=1" in stderr
    )
    assert len(optuna.load_study(study_name="bug2", storage=storage).trials) == 2


def test_reasons_of_exceptions_and_exit_codes():
    import torch

    from src.train.divergence import NonFiniteLossError

    assert (
        reason_of_exception(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
        == "oom"
    )
    assert reason_of_exception(MemoryError()) == "oom"
    assert reason_of_exception(NonFiniteLossError("nan")) == "nan"
    assert reason_of_exception(ImportError("cannot import name 'x'")) == "error"
    try:  # Lightning answers Ctrl-C during fit with SystemExit(1)
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise SystemExit(1) from None
    except SystemExit as err:
        assert reason_of_exception(err) == "interrupted"
    assert reason_of_exception(SystemExit(1)) == "error"
    assert reason_of_exit(-9, oom_kills_during=1)[0] == "oom"  # the kernel's OOM killer
    assert reason_of_exit(-9, oom_kills_during=0) == ("killed", "trial process killed by SIGKILL")
    assert reason_of_exit(1, oom_kills_during=0)[0] == "crashed"


def test_bad_fault_values_are_refused_up_front(make_cfg):
    from src.train import config_problems

    assert config_problems(make_cfg("+fault=oom_at_step_3")) == []
    [problem] = config_problems(make_cfg("+fault=explode_at_step_x"))
    assert "fault='explode_at_step_x' is invalid" in problem and "oom_at_step_3" in problem
    [problem] = config_problems(make_cfg("+fault=nan_at_step_2_if_batch_gt_4"))
    assert "only oom takes _if_batch_gt_B" in problem
