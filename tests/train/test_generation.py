"""Instruction tuning on causal LMs: response-only loss masking, generation accuracy, every
adapter and quantization on the tiny Llama, forgetting and PTQ metrics in MLflow."""

from __future__ import annotations

import math

import pytest
from mlflow.tracking import MlflowClient

from src.train import train
from src.train.models import load_tokenizer, resolve_source, resolve_tokenizer_path
from src.train.tasks.generation import predicted_label
from src.train.tasks.sft import IGNORE, SFTCollator, encode_example

GEN = ["task=generation", "logger=none", "checkpoint.enabled=false"]


@pytest.fixture(scope="module")
def tokenizer():
    from src.train import compose_config

    cfg = compose_config(["model=tiny_llama"])
    return load_tokenizer(resolve_tokenizer_path(cfg.model, resolve_source(cfg.model)))


def test_loss_is_masked_to_the_response(tokenizer):
    row = encode_example(tokenizer, "Is this fresh or rotten? Great film.", "fresh", max_length=64)
    response = tokenizer("fresh" + tokenizer.sep_token, add_special_tokens=False)["input_ids"]
    n_prompt = len(row["prompt_ids"])
    assert row["input_ids"][:n_prompt] == row["prompt_ids"]
    assert row["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert row["labels"][n_prompt:] == response == row["input_ids"][n_prompt:]


def test_truncation_keeps_the_whole_answer(tokenizer):
    row = encode_example(tokenizer, "word " * 200, "rotten", max_length=32)
    assert len(row["input_ids"]) == 32
    kept = [t for t in row["labels"] if t != IGNORE]
    assert tokenizer.decode(kept).replace(" ", "").startswith("rotten")


def test_collator_pads_labels_with_ignore_and_prompts_on_the_left(tokenizer):
    rows = [
        encode_example(tokenizer, p, r, 64) | {"label": i}
        for i, (p, r) in enumerate([("a b c d e f", "fresh"), ("a", "rotten")])
    ]
    batch = SFTCollator(tokenizer.pad_token_id)(rows)
    short = batch["labels"][1]
    assert short[len(rows[1]["labels"]) :].eq(IGNORE).all()
    assert batch["prompt_attention_mask"][1, 0] == 0 and batch["prompt_attention_mask"][1, -1] == 1
    assert batch["class_ids"].tolist() == [0, 1]


@pytest.mark.parametrize(
    "generated,expected",
    [
        ("Fresh.", 1),
        ("rotten!", 0),
        (" fresh and fun", 1),
        ("Maybe", -1),
        ("", -1),
        ("freshly", -1),
    ],
)
def test_generation_accuracy_matches_the_label_word(generated, expected):
    assert predicted_label(generated, ["rotten", "fresh"]) == expected


@pytest.mark.parametrize("adapter", ["lora", "ia3", "prefix", "prompt", "full", "freeze"])
def test_every_adapter_instruction_tunes_the_tiny_llama(make_cfg, adapter):
    metrics = train(make_cfg(*GEN, f"adapter={adapter}", model="tiny_llama"))
    assert metrics["train/steps"] == 4
    assert math.isfinite(metrics["val/perplexity"]) and metrics["val/perplexity"] > 1
    assert 0 <= metrics["val/acc"] <= 1


@pytest.mark.parametrize("quant", ["int8", "nf4"])
def test_quantized_base_instruction_tunes(make_cfg, quant):
    metrics = train(make_cfg(*GEN, "adapter=lora", f"quant={quant}", model="tiny_llama"))
    assert metrics["train/steps"] == 4 and math.isfinite(metrics["train/loss"])


def test_chatterbot_pairs_are_scored_by_perplexity(make_cfg):
    # batch 32 over 64 rows: two steps an epoch, so validation runs before max_steps=4.
    metrics = train(
        make_cfg(*GEN, "data=chatterbot", "adapter=lora", "data.batch_size=32", model="tiny_llama")
    )
    assert math.isfinite(metrics["val/perplexity"]) and "val/acc" not in metrics


def test_training_lowers_response_perplexity(make_cfg):
    """On a fixed tiny task the loss must actually fall: the masking and labels line up."""
    args = (
        *GEN,
        "adapter=full",
        "optim.lr=3e-3",
        "data.max_train_samples=32",
        "early_stopping.enabled=false",
    )
    before = train(make_cfg(*args, "trainer.max_steps=1", model="tiny_llama"))
    # Batches of 8: four steps an epoch, each a quarter of a 32-row step's logits (the tiny Llama
    # has BERT's 30,522-word vocabulary); perplexity falls as clearly (30,242 -> ~131 here).
    after = train(
        make_cfg(
            *args,
            "trainer.max_steps=30",
            "trainer.max_epochs=30",
            "data.batch_size=8",
            model="tiny_llama",
        )
    )
    assert after["val/perplexity"] < 0.5 * before["val/perplexity"]


def test_forgetting_and_ptq_metrics_land_in_mlflow(make_cfg, store):
    cfg = make_cfg(
        "task=generation",
        "adapter=lora",
        "eval.forgetting=true",
        "eval.forgetting_samples=16",
        "eval.ptq=[int8,nf4]",
        "checkpoint.enabled=false",
        model="tiny_llama",
    )
    train(cfg)
    client = MlflowClient(store)
    [run] = client.search_runs([client.get_experiment_by_name(cfg.logger.experiment).experiment_id])
    m = run.data.metrics
    assert m["forget/ppl_before"] > 1 and m["forget/ratio"] == pytest.approx(
        m["forget/ppl_after"] / m["forget/ppl_before"]
    )
    for kind in ("fp32", "int8", "nf4"):
        assert {f"ptq/{kind}/acc", f"ptq/{kind}/weights_mb", f"ptq/{kind}/latency_ms"} <= set(m)
    assert m["ptq/nf4/weights_mb"] < m["ptq/int8/weights_mb"] < m["ptq/fp32/weights_mb"]


def test_ptq_on_a_classifier(make_cfg):
    metrics = train(
        make_cfg("adapter=lora", "eval.ptq=[nf4]", "logger=none", "checkpoint.enabled=false")
    )
    assert (
        0 <= metrics["ptq/nf4/acc"] <= 1
        and metrics["ptq/nf4/weights_mb"] < metrics["ptq/fp32/weights_mb"]
    )


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["eval.forgetting=true"], "eval.forgetting=true needs task=generation"),
        (["eval.ptq=[int4]"], "unknown kinds ['int4']"),
        (["eval.ptq=[nf4]", "adapter=lora", "quant=nf4"], "eval.ptq needs quant=none"),
        (["eval.ptq=[nf4]", "adapter=prompt"], "adapter=prompt cannot be merged"),
        (
            ["task=generation", "data=chatterbot", "early_stopping.monitor=val/acc"],
            "no labels, so no val/acc",
        ),
    ],
)
def test_bad_eval_settings_are_refused(make_cfg, overrides, message):
    from src.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train(make_cfg(*overrides, model="tiny_llama"))
