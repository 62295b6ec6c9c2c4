"""confirm.top=N confirm.seeds=K: after the search, train the N best configurations again with K
more seeds each. A search picks its best on one draw of the seed; re-training says how much of
the lead survives (mean and sd over the original run and the K new ones). Cost: N x K more runs
of one trial each (on the default sweep ~70 s a run on 2 cores: top=2 seeds=2 adds ~5 min).

The runs are MLflow children of the sweep's parent run, tagged `confirm=<trial number>` and
`seed`; they are not Optuna trials (the sampler should not see a configuration twice). Their
results go to the study's user attrs `confirm_<trial number>`, which the report reads."""

from __future__ import annotations

import os
import statistics

from optuna.trial import TrialState

from src.sweep.configs import job_config, trial_config, trial_settings
from src.sweep.process.job import TrialJob
from src.sweep.process.runner import run_trial
from src.sweep.trial import SweepContext

ATTR = "confirm_{number}"


def confirm_best(ctx: SweepContext, top: int, seeds: int) -> None:
    study, metric = ctx.study, ctx.spec.metrics[0]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    maximize = ctx.spec.directions[0] == "maximize"
    best = sorted(complete, key=lambda t: t.values[0], reverse=maximize)[:top]
    for trial in best:
        overrides = [*ctx.overrides, *trial.user_attrs.get("overrides", [])]
        first_seed = int(trial_config(overrides).seed)
        values = [trial.values[0]]
        for seed in range(first_seed + 1, first_seed + 1 + seeds):
            outcome = _run(ctx, trial, overrides, seed)
            if metric in outcome.metrics:
                values.append(float(outcome.metrics[metric]))
        summary = summarize(values)
        study.set_user_attr(ATTR.format(number=trial.number), summary)
        print(
            f"[sweep {study.study_name}] confirm #{trial.number} {trial.user_attrs.get('method')}:"
            f" {metric} {summary['mean']:.4g} +- {summary['sd']:.2g} over {summary['n']} seeds",
            flush=True,
        )


def summarize(values: list[float]) -> dict:
    """mean, sample sd (0 for one value) and n of one configuration's runs."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"values": values, "mean": statistics.fmean(values), "sd": sd, "n": len(values)}


def _run(ctx: SweepContext, trial, overrides: list[str], seed: int):
    run_name = f"{ctx.study.study_name}-t{trial.number:03d}-confirm-s{seed}"
    tags = {
        "confirm": str(trial.number),
        "seed": str(seed),
        "study_name": ctx.study.study_name,
        "sweep": ctx.spec.name,
        "sweep_method": str(trial.user_attrs.get("method", "")),
    }
    log_path = str(ctx.log_dir / f"confirm-{trial.number:04d}-s{seed}.log") if ctx.quiet else None
    settings = trial_settings(run_name, ctx.uri, ctx.quiet)
    job = TrialJob(
        study_name=ctx.study.study_name,
        storage=ctx.storage,
        trial_id=trial._trial_id,
        number=trial.number,
        pruner=ctx.spec.pruner,
        prune=False,
        config=job_config(overrides, {"seed": seed, **settings}),
        monitor=ctx.spec.metrics[0],
        parent_run_id=ctx.runs.run_id,
        tags=tags,
        cwd=os.getcwd(),
        quiet=ctx.quiet,
        log_path=log_path,
    )
    outcome = run_trial(job)
    ctx.runs.record_trial(trial.number, outcome, run_name, tags, log_path)
    return outcome
