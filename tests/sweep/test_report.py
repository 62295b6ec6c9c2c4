"""The report's arithmetic and rules on hand-checked examples: Wilson intervals, ties with the
best, the Pareto front over complete trials only, the recommendation, and method-grouped pruning."""

from __future__ import annotations

import math
import warnings

import optuna
import pandas as pd
import pytest

from src.sweep.report.recommend import difference_interval, recommendation
from src.sweep.report.table import pareto_mask, tied_with_best, wilson
from src.sweep.samplers import build_pruner, pruned_by


def test_wilson_interval_matches_the_hand_computed_one():
    # p = 0.8, n = 100, z = 1.96: centre 0.7889, half-width 0.0777 (Wilson 1927).
    low, high = wilson(0.8, 100)
    assert low == pytest.approx(0.7112, abs=1e-4) and high == pytest.approx(0.8667, abs=1e-4)
    assert all(math.isnan(v) for v in wilson(0.8, None))
    assert wilson(1.0, 50)[1] == pytest.approx(1.0) and wilson(1.0, 50)[0] < 1.0


def frame(rows):
    out = pd.DataFrame(
        rows,
        columns=[
            "trial",
            "method",
            "state",
            "reason",
            "val/acc",
            "rows",
            "mem/peak_mb",
            "time/train_s",
        ],
    )
    bounds = [wilson(a, n) for a, n in zip(out["val/acc"], out["rows"], strict=True)]
    out["val/acc_lo"], out["val/acc_hi"] = zip(*bounds, strict=True)
    out["pareto"] = pareto_mask(out)
    out["tied"] = tied_with_best(out)
    return out.assign(**{"param.method": out["method"], "params/trainable": 1.0})


def test_ties_the_front_and_the_recommendation():
    table = frame(
        [
            (0, "full", "COMPLETE", "complete", 0.80, 500, 1500.0, 60.0),
            (1, "lora", "COMPLETE", "complete", 0.78, 500, 1000.0, 50.0),  # within noise of #0
            (2, "prompt", "COMPLETE", "complete", 0.60, 500, 900.0, 40.0),  # clearly worse
            (3, "prefix", "PRUNED", "pruned", 0.90, 500, 800.0, 10.0),  # trained less: not ranked
            (4, "qlora", "FAIL", "oom", math.nan, math.nan, math.nan, math.nan),
        ]
    )
    # tied: the difference's interval contains 0 (#3 is pruned and better: not tied, not ranked)
    assert list(table["tied"]) == [True, True, False, False, False]
    assert list(table["pareto"]) == [True, True, True, False, False]
    # #3 was stopped by the rule across methods at step 46: the comparison says so
    table["pruned_at_step"] = [None, None, None, 46, None]
    table["pruned_by"] = [None, None, None, "behind_best", None]
    text = recommendation(table, "demo")
    assert "5 trials: 3 complete, 1 pruned, 1 failed" in text
    pruned_row = "| prefix | #3 | - | - | 0.900 [0.871, 0.923] | "
    pruned_row += "not comparable: PRUNED@46 behind_best |"
    assert pruned_row in text
    assert "**Tied with it and cheaper:** trial #1 lora" in text
    # memory x 1000/1500, time x 50/60, difference -0.02 with Newcombe's interval around it
    low, high = difference_interval(table.iloc[1], table.iloc[0])
    assert low < -0.02 < high < 0.04
    assert (
        f"| lora | #1 | 0.67 | 0.83 | 0.780 [0.742, 0.814] | -0.020 [{low:+.3f}, {high:+.3f}] |"
        in text
    )
    assert "| qlora | #4 | - | - | - | not comparable: FAIL(oom) |" in text
    # memory levels: the cheapest complete trial first, then each one that buys accuracy
    levels = text.split("## Best configuration under each memory level")[1].split("##")[0]
    assert [
        line.split("|")[2].strip()
        for line in levels.splitlines()
        if line.startswith("| ") and "MB |" in line
    ] == ["#2", "#1", "#0"]


A_THEN_B = [("a", 0.9), ("a", 0.9), ("b", 0.5), ("b", 0.4)]


def prune_rules(pruner_conf: dict, reports=A_THEN_B, direction="maximize") -> list[str | None]:
    """Each trial reports one (method, value) at step 1, in order; the rule that pruned it, or
    None. By default method a scores 0.9 twice, then method b 0.5 and 0.4."""
    study = optuna.create_study(direction=direction, pruner=build_pruner(pruner_conf))
    space = {"method": optuna.distributions.CategoricalDistribution(["a", "b"])}
    rules = []
    for method, value in reports:
        study.enqueue_trial({"method": method})
        trial = study.ask(space)
        trial.report(value, step=1)
        rules.append(pruned_by(study.pruner, pruner_conf) if trial.should_prune() else None)
        if rules[-1]:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    return rules


def pruned_per_trial(pruner_conf: dict, reports=A_THEN_B, direction="maximize") -> list[bool]:
    return [rule is not None for rule in prune_rules(pruner_conf, reports, direction)]


def test_grouped_pruning_judges_a_trial_against_its_own_method():
    median = {"name": "median", "kwargs": {"n_startup_trials": 1, "n_warmup_steps": 0}}
    # Against everyone, b's first trial is pruned on a's curve and b never gets a hearing.
    assert pruned_per_trial(median) == [False, False, True, True]
    # Within its method, b's first trial completes; its second is judged against it.
    assert pruned_per_trial({**median, "group_by": "method"}) == [False, False, False, True]


def test_a_margin_keeps_trials_the_validation_split_cannot_tell_apart():
    median = {"name": "median", "group_by": "method"}
    median["kwargs"] = {"n_startup_trials": 1, "n_warmup_steps": 0}
    # b's second trial trails its first by 0.1: pruned under a margin of 0.05, kept under 0.2.
    assert pruned_per_trial({**median, "margin": 0.05}) == [False, False, False, True]
    assert pruned_per_trial({**median, "margin": 0.2}) == [False, False, False, False]


def test_behind_best_prunes_across_methods_what_group_by_would_let_run():
    median = {"name": "median", "group_by": "method"}
    median["kwargs"] = {"n_startup_trials": 1, "n_warmup_steps": 0}
    # b's first trial (0.5) has no b trial to be judged against; it trails a's best (0.9) by 0.4.
    assert pruned_per_trial({**median, "behind_best": 0.3}) == [False, False, True, True]
    assert pruned_per_trial({**median, "behind_best": 0.45}) == [False, False, False, True]
    # Not before the pruner's warm-up: the checks at step 1 are all still allowed to trail.
    warm = {**median, "kwargs": {"n_startup_trials": 1, "n_warmup_steps": 2}}
    assert pruned_per_trial({**warm, "behind_best": 0.3}) == [False] * 4


def test_the_rule_that_pruned_is_named():
    conf = {"name": "median", "group_by": "method", "behind_best": 0.3}
    conf["kwargs"] = {"n_startup_trials": 1, "n_warmup_steps": 0}
    # a's second trial: the median rule within a; b's first: only behind the best of all.
    rules = prune_rules(conf, [("a", 0.9), ("a", 0.3), ("b", 0.5)])
    assert rules == [None, "median", "behind_best"]


def test_behind_best_reads_a_minimized_objective_the_other_way():
    conf = {"name": "none", "behind_best": 0.3}
    losses = [("a", 0.5), ("a", 0.6), ("a", 0.9), ("a", 0.7)]  # 0.9 is 0.4 above the best, 0.7 0.2
    assert pruned_per_trial(conf, losses, direction="minimize") == [False, False, True, False]


def test_thin_importances_are_a_caveat_in_the_title_not_console_warnings():
    from src.sweep.report.plots import _optuna_plots

    # lr_a and lr_b are each sampled by one trial (a short sweep's per-method parameters).
    study = optuna.create_study(direction="maximize")
    for method in ["a", "b", "c", "c"]:
        study.enqueue_trial({"method": method})
    study.optimize(
        lambda t: t.suggest_float(f"lr_{t.suggest_categorical('method', ['a', 'b', 'c'])}", 0, 1),
        n_trials=4,
    )
    skipped = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        titles = [title for title, _ in _optuna_plots(study, skipped)]
    assert [str(w.message) for w in caught] == [] and skipped == []
    caveat = "(rough: values tried by fewer than 2 trials for lr_a, lr_b)"
    assert f"Parameter importances {caveat}" in titles
