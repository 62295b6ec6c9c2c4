"""Benchmark: what pruning saves, and the fixed cost of a trial process.

    python bench/sweep.py [--trials N] [--pruned-study S] [extra Hydra overrides ...]

Two arms on sweeps/default.yaml, same sampler, seed and space: the file as is (median pruner)
and the file with pruner none. Cost = sum of trial train time (a pruned trial counts the time up
to its pruning check) until a trial that was not pruned reaches (best unpruned val acc - 1 point).
ratio = cost pruned / cost unpruned (target <= 0.35).

The pruned arm is a live study: an existing one (--pruned-study, e.g. the `make sweep` run) or
one run here. Besides the live ratio, the unpruned arm's own curves are replayed through the
same pruner (the same trials, only the pruning decisions differ), which separates what the
pruner saves from how differently the sampler wandered once trials were pruned.
Fixed cost per trial = child process start -> end of the first optimizer step (target <= 3 s).
Results: bench/results/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the project's src/ must be importable

import optuna  # noqa: E402

from src.sweep import load_spec, run_sweep  # noqa: E402
from src.sweep.samplers import build_pruner  # noqa: E402

STORAGE = "sqlite:///mlruns/optuna.db"
POINT = 0.01


def cost_to_reach(trials, target: float) -> float | None:
    """Sum of train seconds, in trial order, until a non-pruned trial reaches target."""
    spent = 0.0
    for t in trials:
        spent += trial_cost(t)
        if t.state.name == "COMPLETE" and t.values[0] >= target:
            return spent
    return None


def trial_cost(t) -> float:
    if t.state.name == "PRUNED":
        return t.user_attrs.get("elapsed_at_step", {}).get(
            str(t.user_attrs.get("pruned_at_step")), 0.0
        )
    return t.user_attrs.get("metrics", {}).get("time/train_s", 0.0)


def replay(trials, pruner_conf: dict, target: float) -> dict:
    """The unpruned trials' real curves, in order, through the pruner: prune decisions only."""
    study = optuna.create_study(direction="maximize", pruner=build_pruner(pruner_conf))
    spent, reached, pruned = 0.0, None, 0
    for t in trials:
        elapsed = t.user_attrs.get("elapsed_at_step", {})
        # The same params, so a pruner with group_by (or behind_best) sees each trial's method.
        study.enqueue_trial(t.params)
        live = study.ask(t.distributions)
        for step, value in sorted(t.intermediate_values.items()):
            live.report(value, step)
            if live.should_prune():
                spent += elapsed.get(str(step), 0.0)
                study.tell(live, state=optuna.trial.TrialState.PRUNED)
                pruned += 1
                break
        else:
            spent += trial_cost(t)
            study.tell(live, t.values[0])
            if reached is None and t.values[0] >= target:
                reached = spent
    return {"cost_to_target_s": reached, "trials_pruned": pruned}


# Pruners replayed over the unpruned curves: the file's own first, then more aggressive ones.
REPLAY_PRUNERS = {
    "the file's own pruner": None,
    "median, 2 startup, no warmup": {
        "name": "median",
        "kwargs": {"n_startup_trials": 2, "n_warmup_steps": 0},
    },
    "percentile 25, 2 startup, no warmup": {
        "name": "percentile",
        "kwargs": {"percentile": 25.0, "n_startup_trials": 2, "n_warmup_steps": 0},
    },
    "successive halving (min resource 1 check)": {
        "name": "successive_halving",
        "kwargs": {"min_resource": 20},
    },
}


def replay_orders(
    trials, pruner_conf: dict, target: float, n_orders: int = 200, seed: int = 0
) -> dict:
    """Both arms' cost to the target over n_orders random orders of the same real curves.

    One live pair of studies is one draw: whether the first trial already lands within a point of
    the best decides the ratio. Shuffling the order (as random search would) and replaying the
    real curves through the real pruner averages that luck out; the sampler's adaptivity is not
    modelled (TPE would order trials better, in both arms)."""
    import random

    rng = random.Random(seed)
    ratios, costs_on, costs_off = [], [], []
    for _ in range(n_orders):
        order = rng.sample(trials, len(trials))
        off = cost_to_reach(order, target)
        on = replay(order, pruner_conf, target)["cost_to_target_s"]
        if off and on:
            ratios.append(on / off)
            costs_on.append(on)
            costs_off.append(off)
    return {
        "orders": n_orders,
        "ratio_of_mean_costs": sum(costs_on) / sum(costs_off) if costs_off else None,
        "median_ratio": statistics.median(ratios) if ratios else None,
        "orders_reaching_target": len(ratios),
    }


def arm(name: str, spec, n_trials: int, overrides: list[str]):
    started = time.time()
    study = run_sweep(
        spec, name, STORAGE, n_trials=n_trials, timeout=1e9, quiet=True, overrides=overrides
    )
    return study, time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument(
        "--pruned-study", help="an existing study of sweeps/default.yaml to use as the pruned arm"
    )
    parser.add_argument(
        "--prefix",
        default="bench",
        help="study names PREFIX-pruned / PREFIX-unpruned; finished studies are reused",
    )
    parser.add_argument(
        "--keep-enqueue",
        action="store_true",
        help="keep the file's known-good first trials (both arms then start with the "
        "same strong trial, which makes the ratio ~1 by construction)",
    )
    args, overrides = parser.parse_known_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec("default", overrides)
    if not args.keep_enqueue:
        spec.enqueue = []
    if args.pruned_study:
        pruned = optuna.load_study(study_name=args.pruned_study, storage=STORAGE)
        pruned_wall = None
    else:
        pruned, pruned_wall = arm(f"{args.prefix}-pruned", spec, args.trials, overrides)
    spec_off = load_spec("default", overrides)
    spec_off.pruner = {"name": "none"}
    spec_off.enqueue = spec.enqueue
    unpruned, unpruned_wall = arm(f"{args.prefix}-unpruned", spec_off, args.trials, overrides)

    def done(study):
        return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]

    best = max(t.values[0] for t in unpruned.trials if t.state.name == "COMPLETE")
    target = best - POINT
    cost_off = cost_to_reach(done(unpruned), target)
    cost_on = cost_to_reach(done(pruned), target)
    replayed = replay(done(unpruned), spec.pruner, target)
    startup = [
        t.user_attrs["startup_s"]
        for s in (pruned, unpruned)
        for t in s.trials
        if t.user_attrs.get("startup_s") is not None and t.number > 0
    ]  # #0 waits for the fork server
    setup = [
        t.user_attrs["setup_s"]
        for s in (pruned, unpruned)
        for t in s.trials
        if t.user_attrs.get("setup_s") is not None and t.number > 0
    ]
    result = {
        "space": "sweeps/default.yaml",
        "sampler": spec.sampler,
        "pruner": spec.pruner,
        "overrides": overrides,
        "n_trials": args.trials,
        "enqueued": spec.enqueue,
        "best_unpruned_val_acc": best,
        "target_val_acc": target,
        "unpruned": {
            "study": unpruned.study_name,
            "cost_to_target_s": cost_off,
            "wall_s": unpruned_wall,
            "total_train_s": sum(trial_cost(t) for t in done(unpruned)),
        },
        "pruned_live": {
            "study": pruned.study_name,
            "cost_to_target_s": cost_on,
            "wall_s": pruned_wall,
            "total_train_s": sum(trial_cost(t) for t in done(pruned)),
            "trials_pruned": sum(t.state.name == "PRUNED" for t in pruned.trials),
            "best_val_acc": max(
                (t.values[0] for t in pruned.trials if t.state.name == "COMPLETE"), default=None
            ),
        },
        "pruned_replay": replayed,
        "replay_over_orders": {
            name: replay_orders(done(unpruned), conf or spec.pruner, target)
            for name, conf in REPLAY_PRUNERS.items()
        },
        "ratio_live": cost_on / cost_off if cost_on and cost_off else None,
        "ratio_replay": replayed["cost_to_target_s"] / cost_off
        if replayed["cost_to_target_s"] and cost_off
        else None,
        "ratio_total_train_time": (
            sum(trial_cost(t) for t in done(pruned)) / sum(trial_cost(t) for t in done(unpruned))
        ),
        "trial_startup_s": {
            "median": statistics.median(startup) if startup else None,
            "max": max(startup, default=None),
            "n": len(startup),
            "what": "child process start -> end of first optimizer step (fork server warm)",
        },
        "trial_setup_s": {
            "median": statistics.median(setup) if setup else None,
            "max": max(setup, default=None),
            "what": "child process start -> start of first batch (all fixed cost, no step compute)",
        },
    }
    out = ROOT / "bench" / "results" / "sweep.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
