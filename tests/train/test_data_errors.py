"""A user's data file with empty labels, empty texts or a malformed line is named precisely: the
config key, the file, the rows or line, and what to do about it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from src.errors import ConfigError
from src.train import data, train
from src.train.models import resolve_source

REPO = Path(__file__).resolve().parents[2]
SMALL = ["data.val_size=8", "data.test_size=8"]
TRAIN_QUICKLY = [*SMALL, "logger=none", "checkpoint.enabled=false"]


def write_rows(path, n=40, empty_labels=(), empty_texts=(), labels=("pos", "neg")):
    """A csv of n data rows; row i (1-based, header not counted) lacks its label or text if
    listed."""
    lines = ["text,label"]
    for i in range(1, n + 1):
        text = "" if i in empty_texts else f"sample text number {i}"
        label = "" if i in empty_labels else labels[i % 2]
        lines.append(f"{text},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_empty_labels_are_refused_naming_the_file_and_rows(make_cfg, tmp_path):
    path = write_rows(tmp_path / "train.csv", empty_labels=(2, 5))
    with pytest.raises(ConfigError) as err:
        train(make_cfg("data=csv", f"data.train_file={path}", *SMALL))
    [problem] = err.value.problems
    assert f"data.train_file={path}" in problem
    assert "rows 2, 5 (data rows counted from 1, header line not counted)" in problem
    assert "data.drop_unlabelled=true" in problem


def test_many_empty_labels_are_listed_then_counted(make_cfg, tmp_path):
    path = write_rows(tmp_path / "train.csv", empty_labels=range(3, 20))
    with pytest.raises(ConfigError, match=r"17 row\(s\).*rows 3, 4, .*, 12 and 7 more"):
        data.load_splits(make_cfg("data=csv", f"data.train_file={path}", *SMALL).data, seed=1)


def test_empty_labels_in_several_files_come_in_one_error(make_cfg, tmp_path):
    train_csv = write_rows(tmp_path / "train.csv", empty_labels=(1,))
    test_csv = write_rows(tmp_path / "test.csv", n=10, empty_labels=(4,))
    cfg = make_cfg("data=csv", f"data.train_file={train_csv}", f"data.test_file={test_csv}")
    with pytest.raises(ConfigError) as err:
        data.load_splits(cfg.data, seed=1)
    problems = err.value.problems
    assert len(problems) == 2, problems
    assert f"data.train_file={train_csv}" in problems[0] and "row 1 " in problems[0]
    assert f"data.test_file={test_csv}" in problems[1] and "row 4 " in problems[1]


def test_drop_unlabelled_drops_them_and_says_so(make_cfg, tmp_path, capsys):
    path = write_rows(tmp_path / "train.csv", empty_labels=(2, 5))
    metrics = train(
        make_cfg("data=csv", f"data.train_file={path}", "data.drop_unlabelled=true", *TRAIN_QUICKLY)
    )
    assert metrics["train/steps"] == 2  # 38 rows - 16 held out = 22: one batch, two epochs
    assert (
        f"data: dropped 2 row(s) with an empty label from train (data.train_file={path})"
        in capsys.readouterr().err
    )


def test_integer_labels_keep_their_names_when_empty_cells_are_dropped(make_cfg, tmp_path):
    # pandas reads an integer column with an empty cell as floats; classes stay '0' and '1'.
    path = write_rows(tmp_path / "train.csv", empty_labels=(3,), labels=("0", "1"))
    cfg = make_cfg("data=csv", f"data.train_file={path}", "data.drop_unlabelled=true", *SMALL)
    splits, labels = data.load_splits(cfg.data, seed=1)
    assert labels == ["0", "1"]
    assert sum(len(s) for s in splits.values()) == 39


def test_empty_texts_are_dropped_and_counted(make_cfg, tmp_path, capsys):
    path = write_rows(tmp_path / "train.csv", empty_texts=(3, 7, 9))
    splits, _ = data.load_splits(
        make_cfg("data=csv", f"data.train_file={path}", *SMALL).data, seed=1
    )
    assert sum(len(s) for s in splits.values()) == 37
    assert all(t.strip() for s in splits.values() for t in s["text"])
    assert (
        f"data: dropped 3 row(s) with empty text from train (data.train_file={path})"
        in capsys.readouterr().err
    )


def test_unterminated_quote_names_the_file_and_line(make_cfg, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('text,label\ngood one,pos\nfine,neg\n"never closed,pos\nmore,neg\nlast,pos\n')
    with pytest.raises(ConfigError) as err:
        train(make_cfg("data=csv", f"data.train_file={path}", *SMALL))
    [problem] = err.value.problems
    assert problem.startswith(
        f"data.train_file={path}: malformed csv at line 4: "
        "unexpected end of data (unterminated quote?); parser said: "
    )


def test_extra_field_names_the_line(make_cfg, tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\na,pos\nb,neg\nc,pos,oops\nd,neg\n")
    with pytest.raises(ConfigError, match="malformed csv at line 4: expected 2 fields"):
        data.load_splits(make_cfg("data=csv", f"data.train_file={path}", *SMALL).data, seed=1)


def test_broken_json_line_names_the_file_and_line(make_cfg, tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(
        '{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}\n\n'
        '{"text": "c", "label": pos}\n{"text": "d", "label": "neg"}\n'
    )
    with pytest.raises(ConfigError) as err:
        train(make_cfg("data=jsonl", f"data.train_file={path}", *SMALL))
    [problem] = err.value.problems
    assert problem.startswith(f"data.train_file={path}: malformed json at line 4: Expecting value")
    assert "parser said: " in problem


def test_malformed_and_missing_files_come_in_one_error(make_cfg, tmp_path):
    train_file = tmp_path / "train.parquet"
    train_file.write_bytes(b"PAR1 not really parquet")
    cfg = make_cfg(
        "data=parquet", f"data.train_file={train_file}", f"data.test_file={tmp_path}/gone.parquet"
    )
    with pytest.raises(ConfigError) as err:
        data.load_splits(cfg.data, seed=1)
    text = str(err.value)
    assert "2 problem(s)" in text and "no such file" in text
    assert f"data.train_file={train_file}: malformed parquet file: " in text


def test_cli_refuses_empty_labels_with_exit_code_2_and_no_traceback(make_cfg, tmp_path):
    # The tiny model is built into the shared cache before data is read, and building it draws a
    # progress bar on stderr: build it here first, so stderr holds only the error block.
    resolve_source(make_cfg().model)
    path = write_rows(tmp_path / "train.csv", empty_labels=(2,))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.train",
            "model=tiny_bert",
            "data=csv",
            f"data.train_file={path}",
            *SMALL,
            "logger=none",
            "trainer.max_steps=2",
            f"paths.root={tmp_path}",
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    assert f"data.train_file={path}" in proc.stderr and "row 2 " in proc.stderr
