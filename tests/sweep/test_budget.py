"""Budgets: a configuration whose estimate exceeds budget.memory_mb is recorded over_budget
without a trial process; the sampler sees it as infeasible."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from tiny_runs import TINY_TRIALS  # tests/sweep is on sys.path

from src.errors import ConfigError
from src.sweep import load_spec, run_sweep
from src.sweep.budget import training_sequence
from src.sweep.configs import trial_config
from src.sweep.report.table import format_table, trial_table
from src.train.estimate import estimate

BASE = [
    *TINY_TRIALS,
    "data.batch_size=8",
    "data.max_length=32",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
]
SWEEP = """
base: {base}
space:
  method:
    type: categorical
    choices:
      lora: [adapter=lora]
      full: [adapter=full]
sampler: {{name: grid}}
objectives: [{{metric: val/acc, direction: maximize}}]
budget: {{memory_mb: {budget}}}
n_trials: 2
"""


def test_a_configuration_over_the_memory_budget_is_pruned_without_a_process(sweep_env, store):
    # The budget lies between the two methods' own estimates (full keeps gradients and AdamW
    # state of every weight), so exactly one of them fits.
    path, storage, overrides = sweep_env(SWEEP.format(base=BASE, budget=1))
    # At the sequence the driver estimates for: the longest training row.
    configs = [trial_config([*BASE, *overrides, f"adapter={a}"]) for a in ("lora", "full")]
    lora, full = (estimate(c, sequence=training_sequence(c)).peak_mb for c in configs)
    assert lora < full
    path, storage, overrides = sweep_env(SWEEP.format(base=BASE, budget=(lora + full) / 2))
    study = run_sweep(load_spec(path, overrides), "budget", storage, overrides=overrides)

    by_method = {t.params["method"]: t for t in study.trials}
    over, ran = by_method["full"], by_method["lora"]
    assert over.state.name == "PRUNED" and over.user_attrs["reason"] == "over_budget"
    assert "pid" not in over.user_attrs  # no trial process was started
    assert over.user_attrs["estimate"]["peak_mb"] == pytest.approx(full, rel=0.01)
    assert "budget.memory_mb" in over.user_attrs["fail_reason"]
    assert over.constraints["memory"] > 0 >= ran.constraints["memory"]
    assert ran.state.name == "COMPLETE" and "pid" in ran.user_attrs
    # The run that trained logged its own estimate next to what it measured.
    assert ran.user_attrs["metrics"]["estimate/peak_mb"] > 0

    run = MlflowClient(store).get_run(over.user_attrs["run_id"])
    assert run.data.tags["reason"] == "over_budget" and run.info.status == "KILLED"
    assert run.data.metrics["estimate/peak_mb"] == pytest.approx(full, rel=0.01)
    table = trial_table(study)
    assert "PRUNED(over_budget)" in format_table(table)


def test_budget_values_are_checked_with_the_sweep_file(sweep_env):
    path, _, overrides = sweep_env(SWEEP.format(base=BASE, budget=-5))
    with pytest.raises(ConfigError) as err:
        load_spec(path, overrides)
    assert "budget.memory_mb=-5: must be null or a number > 0" in str(err.value)


def test_the_preflight_warns_about_a_method_that_can_never_fit(sweep_env, capsys):
    path, storage, overrides = sweep_env(SWEEP.format(base=BASE, budget=1))
    study = run_sweep(load_spec(path, overrides), "tiny_budget", storage, overrides=overrides)
    err = capsys.readouterr().err
    for method in ("lora", "full"):
        assert f"warning: space.method.choices.{method}: estimated peak" in err
    assert "exceeds the memory budget 1 MB (budget.memory_mb)" in err
    assert [t.user_attrs["reason"] for t in study.trials] == ["over_budget"] * 2


def test_an_estimate_is_made_once_per_configuration_but_its_learning_rate(tmp_path):
    """The driver judges every trial; TPE samples a new learning rate nearly every time, which
    changes no tensor: the estimate is reused, and made anew when anything else differs."""
    from src.sweep import budget

    base = ["model=tiny_bert", "adapter=lora", f"paths.root={tmp_path}"]
    limit = budget.Budget(memory_mb=1e6)
    before = len(budget._SIMULATED)
    first = budget.judge([*base, "optim.lr=1e-4"], limit)
    again = budget.judge([*base, "optim.lr=3e-3"], limit)
    assert len(budget._SIMULATED) == before + 1 and again.estimate == first.estimate
    bigger = budget.judge([*base, "adapter.peft.r=64", "optim.lr=1e-4"], limit)
    assert len(budget._SIMULATED) == before + 2
    assert bigger.estimate["peak_mb"] > first.estimate["peak_mb"]


def test_a_configuration_whose_evaluation_pass_cannot_fit_is_over_budget(tmp_path):
    """Training fits but validation at data.eval_batch_size does not: the trial would die at its
    first validation, so it is judged by the bigger of the two."""
    from src.sweep import budget

    base = ["model=tiny_llama", "task=generation", "adapter=lora", f"paths.root={tmp_path}"]
    small = budget.judge([*base, "data.eval_batch_size=2"], budget.Budget(memory_mb=1e6))
    limit = small.estimate["peak_mb"] * 1.2
    assert small.estimate["eval_peak_mb"] < limit
    assert budget.judge([*base, "data.eval_batch_size=2"], budget.Budget(limit)).reason is None
    verdict = budget.judge([*base, "data.eval_batch_size=512"], budget.Budget(memory_mb=limit))
    assert verdict.estimate["peak_mb"] <= limit < verdict.estimate["eval_peak_mb"]
    assert "budget.memory_mb" in verdict.reason and "data.eval_batch_size=512" in verdict.reason


# The same sweep with a LoRA rank and an enqueued start at rank 8 (lora's smallest is 2).
ENQUEUED = (
    SWEEP.replace(
        "      full: [adapter=full]\n",
        "      full: [adapter=full]\n"
        "  rank: {{type: int, low: 2, high: 8, path: adapter.peft.r, when: {{method: lora}}}}\n"
        "enqueue:\n  - {{method: lora, rank: 8}}\n",
    )
    .replace("{{name: grid}}", "{{name: random, seed: 0}}")
    .replace("n_trials: 2", "n_trials: 1")
)


def test_the_preflight_estimates_the_enqueued_starts_their_trials_reuse(sweep_env):
    """The budget warnings try each method's enqueued start before its smallest settings: when
    it fits, that estimate is the one its trial needs (no second estimate at the trial's start,
    ~0.5-1 s each on the default space)."""
    from src.sweep import budget

    path, storage, overrides = sweep_env(ENQUEUED.format(base=BASE, budget=1000000))
    simulated, timed = len(budget._SIMULATED), len(budget._TIMED)
    study = run_sweep(load_spec(path, overrides), "enqueued", storage, overrides=overrides)
    (trial,) = study.trials
    assert trial.params == {"method": "lora", "rank": 8} and trial.state.name == "COMPLETE"
    # lora at rank 8 (it fits: lora's smallest settings are never needed) and full: two
    # simulations in all, the trial's own check served by the first. Only the trial's is timed
    # on the device: the checks need memory alone, and run while the trial trains.
    assert len(budget._SIMULATED) == simulated + 2
    assert len(budget._TIMED) == timed + 1
    assert trial.user_attrs["estimate"]["step_ms"] > 0


def test_the_budget_checks_of_other_methods_run_while_trial_0_trains(sweep_env, monkeypatch):
    """Trial #0 is judged on its own configuration and launched; the preflight's check of every
    method runs in the driver's wait for it (it cost ~2.5 s before trial #0 on the default
    sweep, more where the estimate times a GPU)."""
    import time

    from src.sweep import run

    checked_at = []

    def timed(*args):
        for unit in real(*args):
            checked_at.append(time.time())
            yield unit

    real = run.unfit_method_warnings
    monkeypatch.setattr(run, "unfit_method_warnings", timed)
    path, storage, overrides = sweep_env(ENQUEUED.format(base=BASE, budget=1000000))
    study = run_sweep(load_spec(path, overrides), "deferred", storage, overrides=overrides)
    (trial,) = study.trials
    assert len(checked_at) == 2  # lora, full
    launched, ended = trial.user_attrs["launched_at"], trial.datetime_complete.timestamp()
    # None before the launch; the first while the trial runs (what its time did not cover is
    # done before the next ask, or at the end).
    assert launched < checked_at[0] < ended and all(at > launched for at in checked_at)
