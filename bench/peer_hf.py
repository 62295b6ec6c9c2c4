"""Peer (a) of bench/peers.py: transformers' `Trainer.hyperparameter_search(backend="optuna")`.

What a careful user of that API writes for the same search: one process, one Trainer, a
`model_init(trial)` that builds the sampled method with this project's model and adapter
builders, `hp_space(trial)` sampling the sweep file's own space (same names, conditions and
enqueued starts, TPE with the same seed), the same data, batch, optimizer settings and
evaluation points, HF's own pruning (it reports the eval metric to the trial and prunes with the
pruner it is given: the sweep file's median rule, without grouping by method, which HF cannot
do). Per-trial cap and wall budget as the sweep file says. Writes every trial to --out (JSON).

    python bench/peer_hf.py --spec SEEDED.yaml --out trials.json --budget 660
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import torch  # noqa: E402
from peer_processes import max_time_s  # noqa: E402 - bench/ is this script's folder
from transformers import Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from src.sweep import load_spec  # noqa: E402
from src.sweep.configs import trial_config  # noqa: E402
from src.sweep.samplers import build_sampler  # noqa: E402
from src.sweep.space import suggest  # noqa: E402
from src.train import build_datamodule, models, prepare_inputs  # noqa: E402
from src.train.adapters import apply_adapter  # noqa: E402


class TrialClock(TrainerCallback):
    """Start (model_init), first optimizer step and end of each trial, and the memory figures HF
    itself logs at the end of train() when its tracker is on (--memory-metrics)."""

    def __init__(self, budget_end: float, trial_cap_s: float | None):
        self.records: dict[int, dict] = {}
        self.current: dict | None = None
        self.budget_end, self.trial_cap_s = budget_end, trial_cap_s

    def start(self, number: int, overrides: list[str]) -> None:
        self.current = {"number": number, "start": time.time(), "overrides": overrides}
        self.records[number] = self.current
        if torch.cuda.is_available():  # HF reports no GPU peak by default: the bench takes it
            torch.cuda.reset_peak_memory_stats()

    def on_train_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            self.current["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20

    def on_step_end(self, args, state, control, **kwargs):
        self.current.setdefault("first_step", time.time())
        stop_at = self.budget_end
        if self.trial_cap_s is not None:
            stop_at = min(stop_at, self.current["start"] + self.trial_cap_s)
        if time.time() >= stop_at:  # the sweep file's max_time and the wall budget
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key, value in (logs or {}).items():
            if key.startswith("train_mem_"):
                self.current[key] = value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget", type=float, default=None)
    parser.add_argument(
        "--memory-metrics",
        action="store_true",
        help="HF's memory tracker on (skip_memory_metrics=False): its peak figures, at a cost",
    )
    args = parser.parse_args()
    started = time.time()  # the wall budget starts here, as the sweep's timeout does: after
    # the imports, before any data or model work
    spec = load_spec(args.spec)
    budget = args.budget if args.budget is not None else spec.timeout
    base = trial_config(list(spec.base))
    inputs = prepare_inputs(base)
    data = build_datamodule(base, inputs)
    clock = TrialClock(started + budget, max_time_s(spec.base))
    configs: dict[int, object] = {}

    def config_of(trial: optuna.Trial):
        """The trial's composed config: sampled by whichever HF calls first (model_init, then
        hp_space in this transformers version)."""
        if trial.number not in configs:
            overrides = suggest(trial, spec.space).overrides
            clock.start(trial.number, overrides)
            configs[trial.number] = trial_config([*spec.base, *overrides])
        return configs[trial.number]

    def hp_space(trial: optuna.Trial) -> dict:
        cfg = config_of(trial)
        return {"learning_rate": float(cfg.optim.lr), "bf16": cfg.precision.name == "bf16-mixed"}

    def model_init(trial=None):
        cfg = config_of(trial) if trial is not None else base
        model = models.load_model(
            cfg, inputs.model_path, len(inputs.labels), inputs.tokenizer.pad_token_id
        )
        return apply_adapter(model, cfg)

    trainer = Trainer(
        model_init=model_init,
        args=_training_args(base, Path(args.out).parent / "hf-output", args.memory_metrics),
        train_dataset=inputs.tokenized["train"],
        eval_dataset=inputs.tokenized["validation"],
        data_collator=data.collate,
        compute_metrics=_accuracy,
        callbacks=[clock],
    )
    study_name = f"peer-hf-{Path(args.out).stem}"
    storage = f"sqlite:///{Path(args.out).parent.resolve()}/peer-hf.db"
    sampler = build_sampler(spec)
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction="maximize", sampler=sampler
    )
    for params in spec.enqueue:
        study.enqueue_trial(params)
    trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=lambda metrics: metrics["eval_accuracy"],
        n_trials=spec.n_trials,
        direction="maximize",
        backend="optuna",
        timeout=max(1.0, started + budget - time.time()),
        study_name=study_name,
        storage=storage,
        load_if_exists=True,
        sampler=sampler,
        pruner=optuna.pruners.MedianPruner(**dict(spec.pruner.get("kwargs") or {})),
    )
    _write(args.out, optuna.load_study(study_name=study_name, storage=storage), clock)


def _training_args(cfg, output_dir: Path, memory_metrics: bool) -> TrainingArguments:
    """The sweep's base config as TrainingArguments (lr and bf16 are set per trial)."""
    return TrainingArguments(
        output_dir=str(output_dir),
        use_cpu=cfg.trainer.accelerator not in ("gpu", "cuda"),
        per_device_train_batch_size=int(cfg.data.batch_size),
        per_device_eval_batch_size=int(cfg.data.eval_batch_size),
        num_train_epochs=float(cfg.trainer.max_epochs),
        weight_decay=float(cfg.optim.optimizer.weight_decay),
        warmup_steps=float(cfg.optim.warmup_ratio),  # < 1: a fraction of the steps
        lr_scheduler_type=str(cfg.optim.scheduler),
        max_grad_norm=float(cfg.trainer.gradient_clip_val or 0.0),
        eval_strategy="steps",
        eval_steps=float(cfg.trainer.val_check_interval),  # a fraction: of the trial's steps
        logging_steps=int(cfg.trainer.log_every_n_steps),
        save_strategy="no",
        report_to="none",
        seed=int(cfg.seed),
        dataloader_num_workers=int(cfg.data.num_workers),
        remove_unused_columns=False,
        # HF's default: no memory figures. Its tracker (False here) polls RSS in a thread that
        # never sleeps; measured here it made training 2.6x slower on 2 cores (BENCHMARKS.md).
        skip_memory_metrics=not memory_metrics,
        disable_tqdm=True,
    )


def _accuracy(prediction) -> dict:
    logits = prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.argmax(logits, axis=-1) == prediction.label_ids).mean())}


def _mb(value) -> float | None:
    return value / 2**20 if value else None


def _write(path: str, study, clock: TrialClock) -> None:
    trials = []
    for t in study.trials:
        if not t.state.is_finished():  # enqueued starts the budget left unrun
            continue
        rec = dict(clock.records.get(t.number, {}))
        intermediate = t.intermediate_values
        rec.update(
            state=t.state.name,
            value=t.value if t.state.name == "COMPLETE" else None,
            last_reported=intermediate[max(intermediate)] if intermediate else None,
            end=t.datetime_complete.timestamp() if t.datetime_complete else None,
            params=t.params,
            # HF's own figure: peak RSS above where train() ended (a thread polls RSS); with
            # the change over train() it gives the peak above train()'s start.
            # On a GPU, torch.cuda.max_memory_allocated over the trial, taken by the bench (HF
            # reports none unless its tracker is on).
            peak_mb=rec.get("cuda_max_allocated_mb") or _mb(rec.get("train_mem_cpu_peaked_delta")),
            peak_above_train_start_mb=_mb(
                (rec.get("train_mem_cpu_peaked_delta") or 0)
                + (rec.get("train_mem_cpu_alloc_delta") or 0)
            ),
        )
        trials.append(rec)
    Path(path).write_text(json.dumps({"arm": "hf", "trials": trials}, indent=1))


if __name__ == "__main__":
    main()
