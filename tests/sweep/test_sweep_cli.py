"""The sweep and report command lines: --help, console scripts, bad input as one error block."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import psutil

from src.sweep.cli import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(sys.executable).parent


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=cwd)


def test_sweep_help_lists_every_setting():
    for command in (
        [sys.executable, "-m", "src.sweep", "--help"],
        [str(SCRIPTS / "ftsweep-sweep"), "-h"],
    ):
        proc = run(*command)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("usage: python -m src.sweep")
        for setting in SETTINGS:
            assert f"  {setting.key}=" in proc.stdout, setting.key


def test_bad_settings_are_one_error_block_and_exit_2(tmp_path):
    proc = run(
        sys.executable,
        "-m",
        "src.sweep",
        "n_trials=0",
        "verbose=maybe",
        "nokey",
        "budget.memory_mb=lots",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: 4 problem(s)") and "Traceback" not in proc.stderr
    assert "budget.memory_mb='lots': must be a number >= 1" in proc.stderr
    assert not (tmp_path / "mlruns").exists()  # nothing was created


def test_bad_input_found_after_the_fork_server_started_leaves_no_fork_server(tmp_path):
    # The fork server starts before the sweep file is read (its imports overlap the checks) and
    # inherits stdout/stderr: if it outlived the error, it would import for seconds more with
    # the command's output held open (a pipe reading it, `| tee` or a CI log, would wait).
    command = [sys.executable, "-m", "src.sweep", "sweep=no_such_sweep"]
    with open(tmp_path / "err.txt", "w") as err:  # a file, not a pipe: not waited on to close
        assert subprocess.run(command, stderr=err, cwd=tmp_path, timeout=120).returncode == 2
    assert "sweep=no_such_sweep: no such file" in (tmp_path / "err.txt").read_text()
    # Its command line holds the driver's sys.path, whose first entry is tmp_path.
    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if "multiprocessing.forkserver" in " ".join(p.info["cmdline"] or [])
        and str(tmp_path) in " ".join(p.info["cmdline"])
    ]
    assert left == []


def test_report_help_and_bad_input(tmp_path):
    for command in (
        [sys.executable, "-m", "src.report", "--help"],
        [sys.executable, "-m", "src.sweep", "report", "--help"],
        [str(SCRIPTS / "ftsweep-report"), "--help"],
    ):
        proc = run(*command)
        assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m src.report")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    proc = run(str(SCRIPTS / "ftsweep-report"), "study_name=nope", f"storage={storage}")
    assert proc.returncode == 2 and "study_name=nope: no such study" in proc.stderr
    assert not (tmp_path / "optuna.db").exists()  # looking did not create the storage
    proc = run(sys.executable, "-m", "src.report", "stdy=x")
    assert proc.returncode == 2 and "study_name=S is required" in proc.stderr


def test_status_of_a_missing_study_creates_nothing(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    proc = run(sys.executable, "-m", "src.sweep", "status", "study_name=nope", f"storage={storage}")
    assert proc.returncode == 2 and "study_name=nope: no such study" in proc.stderr
    assert not (tmp_path / "optuna.db").exists()  # looking did not create the storage
    for name in ("lora_b", "lora_a"):
        optuna.create_study(study_name=name, storage=storage)
    proc = run(sys.executable, "-m", "src.sweep", "status", "study_name=lora", f"storage={storage}")
    assert "study_name=lora: no such study" in proc.stderr
    assert "its studies: lora_a, lora_b" in proc.stderr  # the name that was meant, likely
