"""Sweep preflight: bad storage, trial configs, model/data and stored studies are all found before
any trial runs, in one error. Real files, real SQLite Optuna storages, no mocks."""

from __future__ import annotations

import importlib.util

import optuna
import pytest

from src.errors import ConfigError
from src.sweep import load_spec
from src.sweep.preflight import preflight, storage_problems
from src.sweep.preflight.study import study_problems
from src.sweep.spec import SIGNATURE_ATTR, space_signature

# DATA is replaced by the folder of the module's csv files (YAML braces rule out str.format).
SWEEP = """
base: [model=tiny_bert, data=csv, "data.train_file=DATA/train.csv", data.val_size=4,
       data.test_size=4, data.max_length=64]
space:
  method:
    type: categorical
    choices:
      lora: [adapter=lora]
      prompt: [adapter=prompt]
  rank: {type: categorical, choices: [4, 8], path: adapter.peft.r, when: {method: lora}}
  alpha: {derive: "2 * rank", path: adapter.peft.lora_alpha, when: {method: lora}}
  tokens: {type: int, low: 2, high: 6, path: adapter.peft.num_virtual_tokens,
           when: {method: prompt}}
  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, path: optim.lr}
sampler: {name: random, seed: 0}
objectives: [{metric: val/acc, direction: maximize}]
"""
TOKENS = SWEEP[SWEEP.index("  tokens:") : SWEEP.index("  lr:")]
LR = "low: 1.0e-4, high: 1.0e-2, log: true"
ALPHA = 'alpha: {derive: "2 * rank", path: adapter.peft.lora_alpha, when: {method: lora}}'
PROMPT = "prompt: [adapter=prompt]"
STORE = "sqlite:///{tmp}/optuna.db"


def params(*lines: str) -> dict:
    """An edit adding params at the end of the space."""
    return {TOKENS: TOKENS + "".join(f"  {line}\n" for line in lines)}


def choice(text: str) -> dict:
    """An edit adding a method choice."""
    return {PROMPT: f"{PROMPT}\n      {text}"}


WARMUP = "warmup: {type: float, low: 0.0, high: 1.05, step: 0.5, path: optim.warmup_ratio}"
LAYERS = (
    "layers: {type: int, low: 1, high: 6, path: adapter.trainable_top_layers, "
    "when: {method: freeze}}"
)
PRECISION = "prec: {type: categorical, choices: [32-true, 16-mixed], path: precision}"
MULT = "mult: {type: int, low: 1, high: 2, when: {method: prompt}}"

# id, edits of SWEEP, trial overrides, storage, stored study ('space' / 'directions'), expected.
# {tmp} is the test's tmp_path, {data} the csv folder.
CASES = [
    (
        "storage-scheme",
        {},
        [],
        "redis://localhost/0",
        None,
        ["storage=redis://localhost/0: scheme 'redis' is not supported; use sqlite:///"],
    ),
    (
        "storage-malformed",
        {},
        [],
        "optuna.db",
        None,
        ["storage=optuna.db: not a valid database URL", "(for a file write sqlite:///optuna.db)"],
    ),
    (
        "storage-folder",
        {},
        [],
        "sqlite:///{tmp}",
        None,
        ["storage=sqlite:///{tmp}: {tmp} is a folder; give a file in it"],
    ),
    (
        "storage-under-a-file",
        {},
        [],
        "sqlite:///{tmp}/tiny.yaml/optuna.db",
        None,
        [
            (
                "storage=sqlite:///{tmp}/tiny.yaml/optuna.db: cannot create folder "
                "{tmp}/tiny.yaml: {tmp}/tiny.yaml is a file"
            )
        ],
    ),
    (
        "storage-not-sqlite",
        {},
        [],
        "sqlite:///{tmp}/tiny.yaml",
        None,
        ["{tmp}/tiny.yaml is not an SQLite database"],
    ),
    (
        "lr-low-endpoint",
        {LR: "low: 0.0, high: 1.0e-2"},
        [],
        STORE,
        None,
        ["space.lr: optim.lr=0.0 is invalid: must be a number > 0"],
    ),
    (
        "rank-choice-0",
        {"choices: [4, 8]": "choices: [0, 8]"},
        [],
        STORE,
        None,
        [
            "space.rank (when method=lora): adapter.peft.r=0 is invalid: must be an integer >= 1",
            "space.alpha (when method=lora): adapter.peft.lora_alpha=0 is invalid",
        ],
    ),
    (
        "int-low-endpoint",
        {"low: 2, high: 6,": "low: 0, high: 6,"},
        [],
        STORE,
        None,
        ["space.tokens (when method=prompt): adapter.peft.num_virtual_tokens=0 is invalid"],
    ),
    (
        "stepped-top-endpoint",
        params(WARMUP),
        [],
        STORE,
        None,  # 1.05 on a 0.5 grid tops at 1.0
        ["space.warmup: optim.warmup_ratio=1.0 is invalid: must be a number in [0, 1)"],
    ),
    (
        "fixed-value",
        params("warmup: {value: 1.0, path: optim.warmup_ratio}"),
        [],
        STORE,
        None,
        ["space.warmup: optim.warmup_ratio=1.0 is invalid: must be a number in [0, 1)"],
    ),
    (
        "impossible-combination",
        choice("full: [adapter=full, quant=nf4]"),
        [],
        STORE,
        None,
        ["space.method.choices.full: quant=nf4 with adapter=full is impossible"],
    ),
    (
        "group-choice",
        params(PRECISION),
        [],
        STORE,
        None,
        ["space.prec: precision=16-mixed needs a GPU (trainer=gpu)"],
    ),
    (
        "base-value",
        {},
        ["early_stopping.patience=-1"],
        STORE,
        None,
        ["base: early_stopping.patience=-1 is invalid: must be an integer >= 0"],
    ),
    (
        "layers-above-model",
        {**choice("freeze: [adapter=freeze]"), **params(LAYERS)},
        [],
        STORE,
        None,
        [
            (
                "space.layers (when method=freeze): adapter.trainable_top_layers=6 is larger "
                "than the model's 4 layers (allowed: 0..4)"
            )
        ],
    ),
    (
        "derive-uses-absent-param",
        {ALPHA: f"{MULT}\n  " + ALPHA.replace("2 * rank", "mult * rank")},
        [],
        STORE,
        None,
        ["space.alpha (when method=lora): derive 'mult * rank' uses ['mult'], which do not apply"],
    ),
    (
        "data-file-missing",
        {},
        ["data.train_file=/nonexistent/data.csv"],
        STORE,
        None,
        ["data.train_file: no such file '/nonexistent/data.csv'"],
    ),
    (
        "data-file-missing-beside-a-malformed-one",
        {},
        ["data.train_file={data}/bad.csv", "data.test_file=/nonexistent/test.csv"],
        STORE,
        None,
        [
            "data.test_file: no such file '/nonexistent/test.csv'",
            "data.train_file={data}/bad.csv: malformed csv at line 3: expected 2 fields",
        ],
    ),
    (
        "data-column-missing",
        {},
        ["data.train_file={data}/no_text.csv"],
        STORE,
        None,
        [
            (
                "data.text_column='text' is not a column of split 'train'; "
                "columns are ['sentence', 'label']"
            )
        ],
    ),
    (
        "tokens-past-the-positions",  # tiny BERT has 128; the space's default 20 is never used
        {"data.max_length=64": "data.max_length=125"},
        [],
        STORE,
        None,
        [
            "space.tokens (when method=prompt): adapter.peft.num_virtual_tokens=6 (prompt) with "
            "data.max_length=125 needs 131 positions"
        ],
    ),
    (
        "data-file-not-given",
        {'"data.train_file=DATA/train.csv", ': ""},
        [],
        STORE,
        None,
        ["base: data.train_file must be set (data.train_file=...)"],
    ),
    (
        "study-space-changed",
        {},
        [],
        STORE,
        "space",
        [
            (
                "study 'tiny' in sqlite:///{tmp}/optuna.db was run with a different search space "
                "(added ['tokens']); resume with allow_space_change=true to continue this study "
                "anyway, or pick a new study_name"
            )
        ],
    ),
    (
        "study-directions",
        {},
        [],
        STORE,
        "directions",
        [
            (
                "study 'tiny' in sqlite:///{tmp}/optuna.db has directions ['minimize'], "
                "the sweep file says ['maximize']; pick another study_name"
            )
        ],
    ),
]


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    """Small csv files shared by the module: data is read once per process (keyed by path)."""
    folder = tmp_path_factory.mktemp("data")
    rows = "\n".join(f"sample text number {i},{'pos' if i % 2 else 'neg'}" for i in range(40))
    (folder / "train.csv").write_text(f"text,label\n{rows}\n")
    (folder / "no_text.csv").write_text(f"sentence,label\n{rows}\n")
    (folder / "bad.csv").write_text("text,label\na,pos\nb,neg,oops\nc,pos\n")
    return folder


def write_sweep(tmp_path, data_files, edits: dict, name: str = "tiny") -> str:
    text = SWEEP
    for old, new in edits.items():
        assert old in text, old  # a stale edit would silently test the valid file
        text = text.replace(old, new)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace("DATA", str(data_files)))
    return str(path)


def store_study(
    url: str, directions: list[str], signature: dict | None, name: str = "tiny"
) -> None:
    study = optuna.create_study(study_name=name, storage=url, directions=directions)
    if signature is not None:
        study.set_user_attr(SIGNATURE_ATTR, signature)


@pytest.mark.parametrize(
    "edits,overrides,storage,study,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_found_before_any_trial(
    tmp_path, data_files, edits, overrides, storage, study, expected
):
    fill = {"tmp": tmp_path, "data": data_files}
    overrides = [o.format(**fill) for o in overrides]
    spec = load_spec(write_sweep(tmp_path, data_files, edits), overrides)
    url = storage.format(**fill)
    if study == "space":  # stored by a sweep file without 'tokens'
        old = load_spec(write_sweep(tmp_path, data_files, {TOKENS: ""}, name="old"))
        store_study(url, ["maximize"], space_signature(old))
    elif study == "directions":
        store_study(url, ["minimize"], space_signature(spec))
    with pytest.raises(ConfigError) as err:
        preflight(spec, overrides, "tiny", url)
    for needle in expected:
        assert needle.format(**fill) in str(err.value), needle
    assert len(err.value.problems) == len(set(err.value.problems))  # deduplicated
    # nor said twice, by the value check of the base config and again by the source check
    said = [p.removeprefix("base: ") for p in err.value.problems]
    assert len(said) == len(set(said)), err.value.problems


def test_only_the_sampled_token_counts_past_the_positions_are_reported(tmp_path, data_files):
    """tiny BERT has 128 learned positions: at data.max_length=125 the space's 2 virtual tokens
    fit and its 6 do not; adapter=prompt's default 20 is never used (the space always sets it)."""
    edits = {"data.max_length=64": "data.max_length=125"}
    spec = load_spec(write_sweep(tmp_path, data_files, edits))
    with pytest.raises(ConfigError) as err:
        preflight(spec, [], "tiny", f"sqlite:///{tmp_path}/optuna.db")
    assert err.value.problems == [
        "space.tokens (when method=prompt): adapter.peft.num_virtual_tokens=6 (prompt) with "
        "data.max_length=125 needs 131 positions; model=tiny_bert has 128 (learned position "
        "embeddings): allowed data.max_length + num_virtual_tokens <= 128"
    ]


def test_every_problem_comes_in_one_error_storage_first(tmp_path, data_files):
    overrides = ["data.train_file=/nonexistent/data.csv"]
    spec = load_spec(
        write_sweep(
            tmp_path,
            data_files,
            {"choices: [4, 8]": "choices: [0, 8]", LR: "low: 0.0, high: 1.0e-2"},
        ),
        overrides,
    )
    with pytest.raises(ConfigError) as err:
        preflight(spec, overrides, "tiny", "redis://localhost/0")
    problems = err.value.problems
    assert problems[0].startswith("storage=redis://localhost/0: ")
    for needle in (
        "space.rank (when method=lora): adapter.peft.r=0",
        "space.lr: optim.lr=0.0",
        "no such file '/nonexistent/data.csv'",
    ):
        assert any(needle in p for p in problems), needle


def test_a_valid_sweep_passes_and_creates_nothing(tmp_path, data_files):
    spec = load_spec(write_sweep(tmp_path, data_files, {}))
    preflight(spec, [], "tiny", f"sqlite:///{tmp_path}/new/optuna.db")
    assert not (tmp_path / "new").exists()  # creatable is enough: preflight creates nothing
    store_study(STORE.format(tmp=tmp_path), ["maximize"], space_signature(spec))
    preflight(spec, [], "tiny", STORE.format(tmp=tmp_path))  # resuming the same space


def test_a_changed_space_resumes_only_when_allowed(tmp_path, data_files):
    edits = {TOKENS: "", LR: "low: 1.0e-5, high: 1.0e-2, log: true"}
    old = load_spec(write_sweep(tmp_path, data_files, edits, name="old"))
    new = load_spec(write_sweep(tmp_path, data_files, {}))
    url = STORE.format(tmp=tmp_path)
    store_study(url, ["maximize"], space_signature(old))
    [problem] = study_problems(new, "tiny", url, allow_space_change=False)
    assert "different search space (added ['tokens']; changed lr: low 1e-05 -> 0.0001)" in problem
    preflight(new, [], "tiny", url, allow_space_change=True)
    store_study(url, ["maximize"], None, name="older")  # stored before the attr existed: accepted
    assert study_problems(new, "older", url, allow_space_change=False) == []


@pytest.mark.skipif(importlib.util.find_spec("MySQLdb") is not None, reason="mysqlclient installed")
def test_a_server_storage_needs_its_driver():
    [problem] = storage_problems("mysql://sweeper:secret@localhost/optuna")
    assert problem.startswith(
        "storage=mysql://sweeper:***@localhost/optuna: "  # password hidden
        "database driver 'mysqldb' is not installed"
    )
    assert problem.endswith("pip install mysqlclient")
