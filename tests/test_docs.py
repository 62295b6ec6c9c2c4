"""Docs cannot rot: every command shown in README.md and docs/*.md runs, so a documented command
that fails fails CI.

Each document's commands run in order (a report follows its sweep) in one scratch folder, as a user
would type them, with tiny models and a few steps appended:
  - `python -m src.train|sweep|report`, `ftsweep-*` and `make train|sweep|report` run for real;
  - a command that needs the hub or a GPU (model=hf, data=hf, trainer=gpu) is composed and
    validated instead (nothing is downloaded here); one that needs a SLURM cluster
    (launcher=slurm, `src.sweep status`) or a gRPC storage proxy (`serve-storage`,
    storage=grpc://...) has its settings parsed and checked instead;
  - other make targets (install, test, lint, ui, bench, cluster-up) are dry-run (`make -n`): the
    target must exist; running them here would recurse into the suite or start a server;
  - `source FILE` sets up the user's shell (a cluster's environment) and is skipped: the commands
    after it run here with the embedded defaults;
  - a ```bash block followed directly by a ```text block must print exactly that text;
  - a command that comes to the same as one already run (`make train ARGS="X"` is
    `python -m src.train X`) runs once.
Inline commands with placeholders (NAME, S, URL, `...`, `[...]`) are templates, not commands, and
an entry named without arguments (`ftsweep-train`) is a name.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from src.sweep.cli import parse_args
from src.sweep.grpc_server import read_args
from src.sweep.status import parse_args as status_args
from src.train.validate import command_line_problems

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TRAIN_TINY = [
    "data.max_train_samples=32",
    "data.max_eval_samples=16",
    "data.test_size=16",
    "trainer.max_steps=2",
    "trainer.enable_progress_bar=false",
    "checkpoint.enabled=false",
]
SWEEP_TINY = [
    "model=tiny_bert",
    "data.max_train_samples=64",
    "data.max_eval_samples=32",
    "data.test_size=64",
    "trainer.max_steps=2",
    "trainer.val_check_interval=1",
    "n_trials=1",
]
NEEDS_HUB_OR_GPU = ("model=hf", "data=hf", "trainer=gpu")
PLACEHOLDER = re.compile(r"\.\.\.|\[|\b[A-Z]+\b(?!=)")
ENTRIES = {
    "ftsweep-train": "src.train",
    "ftsweep-sweep": "src.sweep",
    "ftsweep-report": "src.report",
    "ftsweep-estimate": "src.estimate",
}
MAKE_ENTRIES = {
    "train": "src.train",
    "sweep": "src.sweep",
    "report": "src.report",
    "estimate": "src.estimate",
}


def documented_commands(doc: Path) -> list[tuple[str, str | None]]:
    """(command, expected output or None), in document order, each once."""
    text = doc.read_text()
    found: list[tuple[int, str, str | None]] = []
    for block in re.finditer(r"```bash\n(.*?)```(\s*```text\n(.*?)```)?", text, re.S):
        joined = re.sub(r"\s*\\\n\s*", " ", block[1])  # continuation lines
        lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
        commands = [line for line in lines if line and not line.startswith("#")]
        for i, command in enumerate(commands):
            expected = block[3] if block[3] is not None and i == len(commands) - 1 else None
            found.append((block.start(), command, expected))
    # Inline: make targets, and entries with arguments (a bare `ftsweep-train` is a name).
    inline = r"`((?:\.venv/bin/)?(?:python -m src\.\w+ |make |ftsweep-\w+ )[^`]*)`"
    for match in re.finditer(inline, text):
        if not PLACEHOLDER.search(match[1]) and not _inside_block(text, match.start()):
            found.append((match.start(), match[1], None))
    seen, out = set(), []
    for _, command, expected in sorted(found, key=lambda f: f[0]):
        if command not in seen:
            seen.add(command)
            out.append((command, expected))
    return out


def _inside_block(text: str, pos: int) -> bool:
    return text[:pos].count("```") % 2 == 1


def as_argv(command: str) -> tuple[str, list[str]]:
    """('run' | 'compose' | 'dry-run' | 'skip', argv) for a documented command."""
    words = shlex.split(command)
    if words[0] in ("source", "."):
        return "skip", words
    if words[0] == "eval":  # eval "$(CMD)": CMD must run and print a script
        return "run", _entry(shlex.split(words[1].removeprefix("$(").removesuffix(")")))
    if words[0] == "make":
        return _make(words[1:])
    words = _entry(words)
    module, args = words[2], words[3:]
    if module == "src.sweep" and ("launcher=slurm" in args or args[:1] == ["status"]):
        return "cluster", args
    # The gRPC storage proxy serves until stopped; its clients need one running.
    if args[:1] == ["serve-storage"] or any(a.startswith("storage=grpc://") for a in args):
        return "cluster", args
    if any(needle in args for needle in NEEDS_HUB_OR_GPU):
        return "compose", args
    return "run", [*words, *_tiny(module, command)]


def _entry(words: list[str]) -> list[str]:
    """[sys.executable, -m, module, args...] for python -m / a console script (any folder)."""
    name = Path(words[0]).name
    if name in ENTRIES:
        words = ["python", "-m", ENTRIES[name], *words[1:]]
    assert Path(words[0]).name == "python" and words[1] == "-m", f"not a project command: {words}"
    return [sys.executable, *words[1:]]


def _make(words: list[str]) -> tuple[str, list[str]]:
    target, variables = words[0], dict(w.split("=", 1) for w in words[1:])
    if target not in MAKE_ENTRIES:
        return "dry-run", ["make", "-n", "-C", str(ROOT), target]
    args = shlex.split(variables.get("ARGS", ""))
    if target == "sweep":
        args = [f"sweep={variables.get('SWEEP', 'default')}", *args]
    return as_argv(shlex.join(["python", "-m", MAKE_ENTRIES[target], *args]))


def _tiny(module: str, command: str) -> list[str]:
    if module == "src.train":
        decoder = "smollm2" in command or "task=generation" in command
        return [*TRAIN_TINY, f"model={'tiny_llama' if decoder else 'tiny_bert'}"]
    if module == "src.sweep" and "src.sweep report" not in command:
        return SWEEP_TINY
    return []


def user_files(folder: Path) -> None:
    """The files the documented commands name (train.csv, a/b/c.parquet, a sweep file)."""
    rows = [
        (f"a good film, number {i}" if i % 2 else f"a dull film, number {i}", i % 2)
        for i in range(60)
    ]
    pd.DataFrame(rows, columns=["review", "sentiment"]).to_csv(folder / "train.csv", index=False)
    frame = pd.DataFrame(rows, columns=["text", "label"])
    for name, part in zip("abc", (frame[:40], frame[40:50], frame[50:]), strict=True):
        part.to_parquet(folder / f"{name}.parquet")
    (folder / "path" / "to" / "llama3-config").mkdir(parents=True)
    shutil.copy(ROOT / "sweeps" / "lora_rank_lr.yaml", folder / "path" / "to" / "my_sweep.yaml")
    # A model folder holding just its config.json (the command naming it is composed only).
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    (folder / "path" / "to" / "llama3-config" / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_documented_command_runs(doc, tmp_path, monkeypatch):
    user_files(tmp_path)
    monkeypatch.chdir(tmp_path)  # composed commands' relative paths: the user's folder
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    commands = documented_commands(doc)
    assert commands, f"no commands found in {doc.name}"
    ran: set[tuple[str, ...]] = set()
    for command, expected in commands:
        mode, argv = as_argv(command)
        if mode == "skip" or (mode == "run" and expected is None and tuple(argv) in ran):
            continue
        if mode == "compose":
            assert command_line_problems(argv) == [], command
            continue
        if mode == "cluster":  # the settings parse (a typo fails here), nothing is submitted
            if argv[0] == "status":
                status_args(argv[1:])
            elif argv[0] == "serve-storage":
                assert read_args(argv[1:])[1] == [], command
            else:
                parse_args(argv)
            continue
        proc = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        output = f"$ {command}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        if expected is not None:  # a documented error: exactly that text, exit code 2
            assert proc.returncode == 2, output
            assert proc.stderr.strip() == expected.strip(), output
        else:
            assert proc.returncode == 0, output
        ran.add(tuple(argv))


def test_the_parser_finds_blocks_inline_commands_and_expectations(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Run `make sweep` or `python -m src.report study_name=S`.\n```bash\n"
        "python -m src.train a=1 \\\n  b=2   # note\n# comment\n```\n\n```text\n"
        "error: x\n```\n"
    )
    assert documented_commands(doc) == [
        ("make sweep", None),
        ("python -m src.train a=1 b=2", "error: x\n"),
    ]
    assert as_argv("make sweep SWEEP=x ARGS='n_trials=3'")[1][2:5] == [
        "src.sweep",
        "sweep=x",
        "n_trials=3",
    ]
    assert as_argv("make ui")[0] == "dry-run"
    assert as_argv("source .cluster/env")[0] == "skip"
    assert as_argv('eval "$(.venv/bin/ftsweep-train -sc install=bash)"')[1][1:] == [
        "-m",
        "src.train",
        "-sc",
        "install=bash",
    ]
    assert as_argv("python -m src.train model=hf model.name_or_path=x")[0] == "compose"
    assert as_argv("python -m src.sweep launcher=slurm workers=4")[0] == "cluster"
    assert as_argv("python -m src.sweep status study_name=s cancel=true")[0] == "cluster"
    assert as_argv("python -m src.sweep serve-storage port=13000")[0] == "cluster"
    assert as_argv("python -m src.report study_name=s storage=grpc://h:1")[0] == "cluster"
