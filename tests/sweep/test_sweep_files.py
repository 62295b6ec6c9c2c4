"""Every shipped sweep file validates and runs one trial on a tiny model (as litgpt's
config-hub test does)."""

from __future__ import annotations

import pytest
from tiny_runs import TINY_TRIALS  # tests/sweep is on sys.path

from src.sweep import load_spec, run_sweep
from src.sweep.preflight import preflight
from src.sweep.spec import SWEEPS_DIR

SHIPPED = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
TINY = [
    *TINY_TRIALS,
    "trainer.max_steps=2",
    "trainer.val_check_interval=1",
]


def test_the_required_sweeps_ship():
    assert {"default", "lora_rank_lr", "precision", "tradeoff"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_sweep_validates_and_runs_one_trial(name, tmp_path, store):
    overrides = [*TINY, f"paths.root={tmp_path}", f"logger.tracking_uri={store}"]
    spec = load_spec(name, overrides)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    preflight(spec, overrides, name, storage)  # what `python -m src.sweep` checks first
    study = run_sweep(spec, name, storage, n_trials=1, quiet=True, overrides=overrides)
    # Enqueued starting points beyond n_trials stay WAITING for a resumed run.
    [trial] = [t for t in study.trials if t.state.is_finished()]
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_reason")
    assert len(trial.values) == len(spec.objectives)
