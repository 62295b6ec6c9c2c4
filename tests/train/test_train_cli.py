"""The training command line as users type it: --help, Hydra multirun, the console script and
its tab completion, and bad input as one error block with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(sys.executable).parent  # console scripts live beside the interpreter
TINY = [
    "model=tiny_bert",
    "data.max_train_samples=32",
    "data.max_eval_samples=16",
    "trainer.max_steps=2",
    "trainer.enable_progress_bar=false",
    "checkpoint.enabled=false",
    "summary=false",
]


def run(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_groups_options_and_examples():
    proc = run(sys.executable, "-m", "src.train", "--help")
    assert proc.returncode == 0, proc.stderr
    for needle in (
        "usage: python -m src.train",
        "adapter: freeze, full, ia3, lora, prefix, prompt",
        "experiment: ",
        "qlora_r8",
        "-m adapter=lora,ia3",
        "optim:",
        "lr:",
    ):
        assert needle in proc.stdout, needle


def test_multirun_runs_every_combination_one_after_another(tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run(
        sys.executable,
        "-m",
        "src.train",
        "-m",
        "adapter=lora,ia3",
        "seed=1,2",
        *TINY,
        f"paths.root={tmp_path}",
        f"logger.tracking_uri={store}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = MlflowClient(store).search_runs(
        [MlflowClient(store).get_experiment_by_name("ftsweep").experiment_id]
    )
    assert sorted((r.data.tags["method"], r.data.params["seed"]) for r in runs) == [
        ("ia3", "1"),
        ("ia3", "2"),
        ("lora", "1"),
        ("lora", "2"),
    ]
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs)
    assert all(
        end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False)
    )  # sequential


def test_multirun_values_are_checked_before_anything_runs(tmp_path):
    proc = run(
        sys.executable,
        "-m",
        "src.train",
        "-m",
        "adapter=lora,lorax",
        "quant=none,nf5",
        f"paths.root={tmp_path}",
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: 2 problem(s)")
    assert "adapter=lorax is not a known option" in proc.stderr and "quant=nf5" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_a_data_problem_is_one_error_block_without_traceback(tmp_path):
    rows = tmp_path / "reviews.csv"
    rows.write_text("review,label\ngood film,pos\nbad film,neg\n")
    proc = run(
        sys.executable,
        "-m",
        "src.train",
        *TINY,
        "data=csv",
        f"data.train_file={rows}",
        f"paths.root={tmp_path}",
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.startswith("error: ")
        and "data.text_column='text' is not a column" in proc.stderr
    )
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr


def test_console_script_and_its_tab_completion():
    proc = run(str(SCRIPTS / "ftsweep-train"), "--help")
    assert proc.returncode == 0 and "usage: python -m src.train" in proc.stdout
    proc = run(
        str(SCRIPTS / "ftsweep-train"),
        "-sc",
        "query=bash",
        env={"COMP_LINE": "ftsweep-train adapter="},
    )
    assert proc.returncode == 0
    assert set(proc.stdout.split()) >= {"adapter=lora", "adapter=prompt", "adapter=full"}


def test_the_summary_says_what_was_not_measured():
    """A run too short for a step time (2 warm-up batches) has NaN there: printed as n/a."""
    from src.train.summary import format_summary

    text = format_summary("run", {"mem/peak_mb": 512.4, "time/step_ms": float("nan")}, None)
    assert "peak MB 512" in text
    assert "step ms n/a" in text and "nan" not in text


def test_a_missing_data_file_is_named_before_torch_is_imported(tmp_path):
    """The file check is a stat: it comes with the other bad input, not ~20 s of imports later,
    and a relative path is named with the folder it was looked for in."""
    code = (
        "import sys; from src.train.__main__ import main\n"
        "try: main()\n"
        "except SystemExit as done: print(done.code, 'torch' in sys.modules)"
    )
    args = ["data=csv", "data.train_file=reviews.csv", f"data.test_file={tmp_path}/gone.csv"]
    proc = run(sys.executable, "-c", code, *args, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert proc.stdout.strip() == "2 False", proc.stdout + proc.stderr
    assert f"data.train_file: no such file 'reviews.csv' (relative to {tmp_path})" in proc.stderr
    assert f"data.test_file: no such file '{tmp_path}/gone.csv'\n" in proc.stderr
