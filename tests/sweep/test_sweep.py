"""Sweeps end to end on tiny models: real trial processes, real SQLite Optuna and MLflow stores."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from tiny_runs import TINY_TRIALS  # tests/sweep is on sys.path

from src.errors import ConfigError
from src.sweep import load_spec, main, parse_args, run_sweep
from src.sweep.report import trial_table

TINY = [
    *TINY_TRIALS,
    "trainer.val_check_interval=2",
]
# 'long' trials report at steps 2 and 4; the threshold pruner (nobody reaches acc 1.01) prunes
# from step 3 on, so every 'long' trial is PRUNED at step 4 and every 'short' one COMPLETEs:
# a deterministic pruner with no mock.
SWEEP = """
base: {base}
space:
  method:
    type: categorical
    choices:
      short: [trainer.max_steps=2, adapter=lora]
      long: [trainer.max_steps=4, adapter=prompt]
  rank: {{type: int, low: 2, high: 8, path: adapter.peft.r, when: {{method: short}}}}
  alpha: {{derive: "2 * rank", path: adapter.peft.lora_alpha, when: {{method: [short]}}}}
  tokens: {{type: int, low: 2, high: 6, path: adapter.peft.num_virtual_tokens,
           when: {{method: long}}}}
  lr: {{type: float, low: 1e-4, high: 1e-2, log: true, path: optim.lr}}
sampler: {{name: random, seed: 0}}
pruner: {{name: threshold, kwargs: {{lower: 1.01, n_warmup_steps: 3}}}}
objectives: [{{metric: val/acc, direction: maximize}}]
n_trials: 3
"""


def test_sweep_prunes_tracks_reports_and_resumes(sweep_env, store, tmp_path):
    path, storage, overrides = sweep_env(SWEEP.format(base=TINY))
    spec = load_spec(path, overrides)
    run_sweep(spec, "tiny", storage, quiet=True, overrides=overrides)
    study = run_sweep(spec, "tiny", storage, n_trials=4, quiet=True, overrides=overrides)  # resume

    trials = study.trials
    assert [t.number for t in trials] == [0, 1, 2, 3]  # resumed, not renumbered
    states = {t.params["method"]: set() for t in trials}
    for t in trials:
        states[t.params["method"]].add(t.state.name)
    assert states == {"short": {"COMPLETE"}, "long": {"PRUNED"}}
    for t in trials:  # conditional params only where they apply; derived values follow
        if t.params["method"] == "short":
            assert "rank" in t.params and "tokens" not in t.params
            assert t.user_attrs["fixed"] == {"alpha": 2 * t.params["rank"]}
        else:
            assert "rank" not in t.params and "tokens" in t.params
            assert t.user_attrs["pruned_at_step"] == 4 and set(t.intermediate_values) == {2, 4}
            assert t.user_attrs["pruned_by"] == "threshold"  # the rule that stopped it

    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    assert len(parents) == 2  # one parent run per invocation
    children = [
        r for r in runs if r.data.tags.get("mlflow.parentRunId") in {p.info.run_id for p in parents}
    ]
    assert sorted(int(r.data.tags["trial"]) for r in children) == [0, 1, 2, 3]
    for run in children:
        trial = trials[int(run.data.tags["trial"])]
        assert run.data.tags["trial_state"] == trial.state.name
        assert run.info.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[trial.state.name]
        assert run.data.params["optim.lr"] == str(trial.params["lr"])
        assert run.data.tags.get("pruned_by") == trial.user_attrs.get("pruned_by")
    last = max(parents, key=lambda r: r.info.start_time)
    assert last.data.metrics["best/val_acc"] == pytest.approx(study.best_value)
    assert last.data.tags["best_trial"] == str(study.best_trial.number)

    from src.sweep.report import write_report

    out = write_report(study)
    assert out == tmp_path / "reports" / "tiny"
    files = ("report.html", "report.md", "trials.csv", "pareto.csv", "pareto.png")
    logged = {a.path for a in client.list_artifacts(last.info.run_id, "report")}
    assert {f"report/{f}" for f in files} <= logged
    assert all((out / f).stat().st_size > 0 for f in files)
    # Every trial is in the report, pruned ones with what they measured up to the prune.
    table = trial_table(study)
    assert sorted(table["trial"]) == [0, 1, 2, 3]
    pruned = table[table["state"] == "PRUNED"]
    assert set(pruned["method"]) == {"long"} and (pruned["train/steps"] == 4).all()
    assert pruned["val/acc"].notna().all() and pruned["mem/peak_mb"].notna().all()
    assert not pruned["pareto"].any() and table["pareto"].any()  # the front ranks complete ones
    assert (table["val/acc_lo"] <= table["val/acc"]).all()
    assert (table["val/acc"] <= table["val/acc_hi"]).all()
    assert sorted(pd.read_csv(out / "trials.csv")["trial"]) == [0, 1, 2, 3]
    page = (out / "report.html").read_text()
    assert page.count("plotly.js v") == 1 and "PRUNED" in page  # plotly inlined once
    counts = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED")}
    summary = f"{counts['COMPLETE']} complete, {counts['PRUNED']} pruned"
    assert summary in (out / "report.md").read_text()


def test_failed_trial_is_recorded_and_the_sweep_goes_on(sweep_env, store):
    text = (
        SWEEP.format(base=TINY)
        .replace("long: [", "broken: [data.batch_size=0, ")
        .replace("method: long", "method: broken")
        .replace(
            "{name: random, seed: 0}",
            "{name: grid, kwargs: {search_space: {method: [broken, short], rank: [4],"
            " lr: [0.001], tokens: [3]}}}",
        )
    )
    # max_failures: 1 lets the sweep go on after one unexpected error (the default 0 stops it).
    path, storage, overrides = sweep_env(
        text.replace("n_trials: 3", "n_trials: 2\nmax_failures: 1")
    )
    study = run_sweep(load_spec(path, overrides), "fails", storage, quiet=True, overrides=overrides)
    by_method = {t.params["method"]: t for t in study.trials}
    assert by_method["broken"].state.name == "FAIL" and by_method["short"].state.name == "COMPLETE"
    assert "data.batch_size" in by_method["broken"].user_attrs["fail_reason"]
    run = MlflowClient(store).get_run(by_method["broken"].user_attrs["run_id"])
    assert run.data.tags["trial_state"] == "FAIL" and run.info.status == "FAILED"


def test_multi_objective_sweep_has_a_pareto_set_and_never_prunes(sweep_env, store):
    text = (
        SWEEP.format(base=TINY)
        .replace(
            "objectives: [{metric: val/acc, direction: maximize}]",
            "objectives: [{metric: val/acc, direction: maximize},"
            " {metric: mem/peak_mb, direction: minimize},"
            " {metric: time/train_s, direction: minimize}]",
        )
        .replace("name: random", "name: nsgaii")
        .replace("n_trials: 3", "n_trials: 2")
    )
    path, storage, overrides = sweep_env(text)
    study = run_sweep(load_spec(path, overrides), "multi", storage, quiet=True, overrides=overrides)
    assert all(t.state.name == "COMPLETE" and len(t.values) == 3 for t in study.trials)
    assert all(not t.intermediate_values for t in study.trials)  # no report() in multi-objective
    front = study.best_trials
    assert front
    parent = MlflowClient(store).get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.data.tags["pareto_trials"] == ",".join(str(t.number) for t in front)


BAD = """
bogus: 1
base: [model=tiny_bert]
space:
  method: {type: categorical, choices: {lora: [adapter=lora], oops: [adapter=nope]}}
  lr: {type: float, low: 0.1, high: 0.01, path: optim.lr}
  rank: {type: int, low: 2, high: 8, path: adapter.peft.rank, when: {method: lora}}
  alpha: {derive: "__import__('os').system('x')", path: adapter.peft.lora_alpha,
          when: {methd: lora}}
sampler: {name: tpe-ish}
pruner: {name: medain, margin: -1, behind_best: 0}
objectives: [{metric: val/accuracy, direction: maximize}]
"""


def test_bad_sweep_file_lists_every_problem_before_any_trial(sweep_env, tmp_path, capsys):
    path, storage, overrides = sweep_env(BAD, name="bad")
    with pytest.raises(ConfigError) as err:
        load_spec(path, overrides)
    text = str(err.value)
    for needle in (
        "unknown top-level key 'bogus'",
        "sampler.name='tpe-ish'",
        "pruner.name='medain'",
        "pruner.margin=-1: must be a number >= 0",
        "pruner.behind_best=0: must be a number > 0",
        "val/accuracy",
        "space.lr: empty range",
        "'methd' is not a param defined above",
        "is not allowed",
    ):
        assert needle in text, needle
    # Paths are checked only once the space itself is well formed; then unknown paths and
    # unknown group options of a method choice are reported together.
    fixed = BAD.replace("bogus: 1\n", "").replace("low: 0.1, high: 0.01", "low: 0.01, high: 0.1")
    fixed = fixed.replace("__import__('os').system('x')", "2 * rank").replace("methd", "method")
    path, _, _ = sweep_env(
        fixed.replace("tpe-ish", "tpe")
        .replace("medain", "median")
        .replace("margin: -1, behind_best: 0", "margin: 0.01, behind_best: 0.5")
        .replace("val/accuracy", "val/acc"),
        name="bad2",
    )
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([f"sweep={path}", f"storage={storage}", *overrides])
    message = capsys.readouterr().err
    assert exit_.value.code == 2 and message.startswith("error: ")
    assert "adapter=nope is not a known option" in message
    assert "path 'adapter.peft.rank' is not a key" in message
    with pytest.raises(KeyError):  # nothing ran: the study was never created
        optuna.load_study(study_name="bad2", storage=storage)


def test_cli_args_split_into_settings_and_trial_overrides():
    settings, overrides = parse_args(
        [
            "sweep=lora_rank_lr",
            "n_trials=3",
            "verbose=true",
            "model=tiny_bert",
            "trainer.max_steps=5",
        ]
    )
    assert settings == {"sweep": "lora_rank_lr", "n_trials": 3, "verbose": True}
    settings, _ = parse_args(["workers=4", "oom.retry=true", "max_failures=2"])
    assert (settings["workers"], settings["oom.retry"], settings["max_failures"]) == (4, True, 2)
    assert overrides == ["model=tiny_bert", "trainer.max_steps=5"]
    with pytest.raises(ConfigError) as err:
        parse_args(["n_trials=many", "workers=0", "oom.retry=maybe", "nokey", "study_name="])
    for needle in (
        "n_trials='many'",
        "workers=0",
        "oom.retry='maybe'",
        "'nokey': expected key=value",
        "study_name='': must not be empty",  # it ran a sweep into a study named ''
    ):
        assert needle in str(err.value)


def test_derive_is_arithmetic_only_and_timeout_becomes_atrial_budget():
    from src.sweep.configs import as_overrides, trial_settings
    from src.sweep.driver import max_time_seconds, trial_budget
    from src.sweep.space import evaluate

    assert evaluate("2 * rank", {"rank": 8}) == 16
    assert evaluate("max(4, rank // 2) + 0.5", {"rank": 4}) == 4.5
    for bad in ("__import__('os')", "rank.__class__", "[rank]", "open('x')", "lr"):
        with pytest.raises(ValueError):
            evaluate(bad, {"rank": 8})
    # The sweep timeout caps each trial's training so the sweep's wall time holds.
    assert trial_budget(None, None) is None
    assert trial_budget(None, 150) == 150
    import time

    assert 55 <= trial_budget(time.time() + 60, 150) <= 60
    [cap] = [o for o in as_overrides(trial_settings("r", "u", True, 3725)) if "max_time" in o]
    assert cap == "++trainer.max_time=00:01:02:05" and max_time_seconds(cap.split("=")[1]) == 3725


def test_trials_of_a_killed_sweep_are_failed_on_resume(sweep_env, monkeypatch):
    import time

    from src.sweep import storage as sweep_storage

    monkeypatch.setattr(sweep_storage, "HEARTBEAT_S", 1)
    path, storage, overrides = sweep_env(SWEEP.format(base=TINY))
    spec = load_spec(path, overrides)
    study = sweep_storage.open_study(spec, "killed", storage)
    trial = study.ask()  # as if the sweep died while this trial ran
    from src.sweep.storage import heartbeat

    heartbeat(study, trial)[0]()
    time.sleep(6)  # grace period is 3 heartbeats (3 s); leave room for a loaded machine
    resumed = sweep_storage.open_study(spec, "killed", storage)
    assert resumed.trials[0].state.name == "FAIL"


def test_resuming_with_a_changed_space_needs_consent(sweep_env, tmp_path, capsys):
    text = SWEEP.format(base=TINY).replace("n_trials: 3", "n_trials: 1")
    path, storage, overrides = sweep_env(text)
    args = [
        f"sweep={path}",
        "study_name=space",
        f"storage={storage}",
        "report=false",
        *overrides,
    ]
    main(args)  # stores the space the study's trials come from
    sweep_env(text.replace("low: 2, high: 8", "low: 2, high: 16"))  # same file, wider rank range
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*args, "n_trials=2"])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2 and "was run with a different search space" in stderr
    assert "allow_space_change=true" in stderr
    assert len(optuna.load_study(study_name="space", storage=storage).trials) == 1  # nothing ran
    study = main([*args, "n_trials=2", "allow_space_change=true"])
    assert len(study.trials) == 2


def test_a_sqlite_storage_in_a_new_absolute_folder_is_created(tmp_path):
    from src.sweep.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path}/new/folder/optuna.db", heartbeat_s=5)
    assert isinstance(storage, optuna.storages.RDBStorage) and storage.get_heartbeat_interval() == 5
    assert (tmp_path / "new" / "folder" / "optuna.db").is_file()


def test_confirm_retrains_the_best_with_more_seeds(sweep_env, store, tmp_path):
    text = SWEEP.format(base=TINY).replace("n_trials: 3", "n_trials: 2")
    text = text.replace("lower: 1.01", "lower: 0.0")  # nothing is pruned: both trials complete
    path, storage, overrides = sweep_env(text, name="confirm")
    study = main(
        [f"sweep={path}", f"storage={storage}", "confirm.top=1", "confirm.seeds=2", *overrides]
    )
    best = study.best_trial
    summary = study.user_attrs[f"confirm_{best.number}"]
    assert summary["n"] == 3 and summary["values"][0] == best.value
    client = MlflowClient(store)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], f"tags.confirm = '{best.number}'"
    )
    assert sorted(r.data.params["seed"] for r in runs) == ["43", "44"]  # the trial ran seed 42
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent}
    assert {r.info.status for r in runs} == {"FINISHED"}
    report = (tmp_path / "reports" / "confirm" / "report.md").read_text()
    assert "## Confirmed with more seeds" in report and f"| #{best.number} |" in report
