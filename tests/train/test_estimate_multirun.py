"""`python -m src.estimate -m`: every combination of swept values estimated in one process, the
same numbers as one estimate each, bad combinations named before any is estimated."""

from __future__ import annotations

import json

import pytest

from src.train.config import compose_config
from src.train.estimate import estimate
from src.train.estimate.cli import main
from src.train.validate import command_line_problems

MEMORY = ("tensor_peak_mb", "peak_mb", "eval_peak_mb", "weights_mb", "activations_mb")


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    return done.value.code, out, err


def test_every_combination_is_estimated_as_its_own_estimate_would_be(capsys):
    code, out, _ = run(
        ["-m", "model=tiny_bert", "adapter=lora,ia3", "data.batch_size=8,16", "--json"], capsys
    )
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["overrides"][1:] for r in records] == [  # Hydra's order: the last key fastest
        ["adapter=lora", "data.batch_size=8"],
        ["adapter=lora", "data.batch_size=16"],
        ["adapter=ia3", "data.batch_size=8"],
        ["adapter=ia3", "data.batch_size=16"],
    ]
    for record in records:
        main([*record["overrides"], "--json"])
        alone = json.loads(capsys.readouterr().out)
        assert {k: record[k] for k in MEMORY} == {k: alone[k] for k in MEMORY}
        assert record["batch_size"] == int(record["overrides"][2].partition("=")[2])
    assert records[1]["tensor_peak_mb"] > records[0]["tensor_peak_mb"]  # batch 16 over 8


def test_the_table_has_a_row_per_combination_and_says_which_fit_the_budget(capsys):
    """glob() sweeps a group's options, as src.train -m does; the budget lies between the two
    estimates, so one fits and the other does not."""
    alone = {
        adapter: estimate(compose_config(["model=tiny_bert", f"adapter={adapter}"]))
        for adapter in ("full", "lora")
    }
    assert alone["lora"].needed_mb < alone["full"].needed_mb
    budget = (alone["lora"].needed_mb + alone["full"].needed_mb) / 2
    argv = ["-m", "model=tiny_bert", "adapter=glob([full,lora])", f"budget.memory_mb={budget}"]
    code, out, _ = run(argv, capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split()[:3] == ["adapter", "batch", "seq"]
    rows = {line.split()[0]: line.split() for line in lines[2:4]}
    assert rows["full"][-1] == "NO" and rows["lora"][-1] == "yes"
    assert float(rows["lora"][4].replace(",", "")) == pytest.approx(alone["lora"].peak_mb, abs=0.05)
    assert f"budget.memory_mb ({budget:,.0f} MB)" in out


def test_bad_combinations_are_named_all_at_once_before_any_is_estimated(capsys):
    argv = ["-m", "model=tiny_bert", "adapter=lorra,full", "quant=nf4,none", "optim.lr=-1"]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""  # not even the table's header: nothing was estimated
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    assert len(problems) == 3
    assert problems[0].startswith("  - [adapter=lorra] adapter=lorra is not a known option")
    assert problems[1].startswith("  - optim.lr=-1 is invalid")  # every combination's: no label
    assert problems[2].startswith("  - [adapter=full quant=nf4] quant=nf4 with adapter=full")


def test_a_sweep_kind_it_cannot_list_is_named(capsys):
    code, out, err = run(["-m", "model=tiny_bert", "optim.lr=interval(0.001,0.1)"], capsys)
    assert code == 2 and out == ""
    assert "optim.lr=interval(0.001,0.1): " in err and "-m sweeps lists (a,b)" in err


def test_a_combination_the_simulation_cannot_run_gets_its_own_row(config_only, capsys):
    """Mixtral's experts simulate in bf16 only (see test_estimate.py): the fp32 row says it
    cannot estimate, the bf16 row is estimated, and the exit code says one failed."""
    path = config_only("mixtral")
    argv = ["-m", "model=hf", f"model.name_or_path={path}", "task=generation"]
    argv += ["data.max_length=32", "precision=32-true,bf16-true"]
    code, out, _ = run(argv, capsys)
    assert code == 1
    failed, estimated = out.splitlines()[2:4]
    assert failed.split()[0] == "32-true" and "cannot estimate: RuntimeError" in failed
    assert estimated.split()[0] == "bf16-true" and estimated.split()[-1] in ("yes", "NO")


def test_a_comma_list_without_multirun_says_to_add_it():
    problems = command_line_problems(["model=tiny_bert", "adapter=lora,ia3"])
    assert len(problems) == 1
    assert problems[0].startswith("adapter=lora,ia3: a comma list sweeps its values")
    assert "-m" in problems[0]
