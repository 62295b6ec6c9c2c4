"""Data-parallel trials (`trainer.devices=2 trainer.strategy=ddp`): two processes per trial over
gloo on CPU, pruning decided on rank 0 and obeyed by both, memory and time per rank."""

from __future__ import annotations

import faulthandler

import pytest
from mlflow.tracking import MlflowClient
from tiny_runs import TINY_TRIALS  # tests/sweep is on sys.path

from src.sweep import load_spec, run_sweep

DDP = [
    *TINY_TRIALS,
    "data.batch_size=8",  # 4 batches per rank and epoch
    "trainer.val_check_interval=2",
    "trainer.devices=2",
    "trainer.strategy=ddp",
]
# 'long' reports at steps 2 and 4 and the threshold pruner (nobody reaches acc 1.01) prunes it
# from step 3 on: pruned at step 4 by rank 0; 'short' completes at step 2.
SWEEP = """
base: {base}
space:
  method:
    type: categorical
    choices:
      short: [trainer.max_steps=2]
      long: [trainer.max_steps=6]
  lr: {{type: float, low: 1e-4, high: 1e-2, log: true, path: optim.lr}}
enqueue: [{{method: long}}, {{method: short}}]
sampler: {{name: random, seed: 0}}
pruner: {{name: threshold, kwargs: {{lower: 1.01, n_warmup_steps: 3}}}}
objectives: [{{metric: val/acc, direction: maximize}}]
n_trials: 2
"""


@pytest.mark.xdist_group("ddp")  # two ranks per trial: not beside another 2-process test
def test_a_data_parallel_trial_is_pruned_on_every_rank_and_measured_per_rank(sweep_env, store):
    path, storage, overrides = sweep_env(SWEEP.format(base=DDP))
    # A rank that missed rank 0's decision would wait in a collective for 30 min: end the test
    # process (a failure with every thread's traceback) long before that.
    faulthandler.dump_traceback_later(300, exit=True)
    try:
        spec = load_spec(path, overrides)
        study = run_sweep(spec, "ddp", storage, quiet=True, overrides=overrides)
    finally:
        faulthandler.cancel_dump_traceback_later()

    long, short = study.trials
    assert (long.state.name, short.state.name) == ("PRUNED", "COMPLETE")
    assert long.user_attrs["pruned_at_step"] == 4
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = {int(r.data.tags["trial"]): r.data.metrics for r in runs if "trial" in r.data.tags}
    assert sorted(children) == [0, 1]  # one run per trial, not one per rank
    for number, steps in ((0, 4), (1, 2)):
        metrics = children[number]
        assert metrics["dist/world_size"] == 2
        # Both ranks stopped after the same step: rank 1 obeyed rank 0's prune.
        assert metrics["rank/0/train/steps"] == metrics["rank/1/train/steps"] == steps
        per_rank = [metrics[f"rank/{r}/mem/peak_mb"] for r in (0, 1)]
        assert all(mb > 0 for mb in per_rank)
        assert metrics["mem/peak_mb"] == max(per_rank)
        assert metrics["mem/peak_mb_total"] == pytest.approx(sum(per_rank))
        assert metrics["time/device_s"] == pytest.approx(
            metrics["rank/0/time/train_s"] + metrics["rank/1/time/train_s"]
        )
    assert "test/acc" in children[1] and "test/acc" not in children[0]  # pruned: no test pass
