"""python -m src.estimate [-m] [OVERRIDE ...] [--json]   (console script: ftsweep-estimate)

The expected peak training memory and step time of the run `python -m src.train` would start
with the same overrides, in seconds, without loading any weights. Bad input prints the same
`error: N problem(s)` block as src.train and exits 2.

-m (--multirun): every combination of swept values (`adapter=lora,ia3 data.batch_size=8,16`,
range(...), choice(...), glob(...)), as `python -m src.train -m` would run them, one table row
each, in one process; with --json one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict

from src.errors import ConfigError, exit_on_config_error

MULTIRUN_FLAGS = ("-m", "--multirun")


def entry() -> None:
    """The program (python -m src.estimate, ftsweep-estimate): main() in a process of its own,
    which may therefore keep bitsandbytes out (main's program=True)."""
    main(program=True)


def main(argv: list[str] | None = None, program: bool = False) -> None:
    """program: this process runs nothing after the estimate, so bitsandbytes is kept out of it
    once the config is checked (see keep_bitsandbytes_out); in a process that trains afterwards
    (a test's) it must not be."""
    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip())
        print("\nExamples:\n  python -m src.estimate +experiment=qlora_r8 data.batch_size=64")
        print("  python -m src.estimate -m +experiment=lora_r16,qlora_r8 data.batch_size=16,32,64")
        print("  python -m src.estimate model=hf model.name_or_path=DIR task=generation \\")
        print("      adapter=lora quant=nf4 trainer=gpu data.batch_size=4 data.max_length=2048")
        return
    as_json = "--json" in argv
    multirun = bool(set(MULTIRUN_FLAGS) & set(argv))
    overrides = [a for a in argv if a not in ("--json", *MULTIRUN_FLAGS)]
    with exit_on_config_error():
        if flags := [a for a in overrides if a.startswith("-")]:
            allowed = "src.estimate takes key=value overrides, -m and --json (see --help)"
            raise ConfigError([f"{flag}: not an option; {allowed}" for flag in flags])
        if multirun:
            from src.train.estimate.multirun import combinations

            combos = combinations(overrides)
            cfgs = checked_configs(combos, without_bitsandbytes=program)
        else:
            cfg = checked_config(overrides, without_bitsandbytes=program)
            est = simulated_estimate(cfg)
    if multirun:
        raise SystemExit(print_multirun(combos, cfgs, as_json))
    if as_json:
        print(json.dumps(as_record(est)))
        return
    from src.train.estimate import format_estimate

    print(format_estimate(est, title(cfg, est.device), sequence_note(cfg)))
    if cfg.data.batch_size == "auto":
        effective = cfg.data.effective_batch_size
        print(
            f"data.batch_size=auto: micro-batch {est.batch_size} x {effective // est.batch_size} "
            f"accumulated = {effective} per optimizer step"
        )
    budget, where = memory_budget(cfg, est.device)
    if budget is not None:
        verdict = "fits in" if est.needed_mb <= budget else "does NOT fit in"
        print(f"{verdict} {where}: {budget:,.0f} MB")


def as_record(est) -> dict:
    """The estimate as --json prints it: every field, and the sums."""
    derived = {"peak_mb": est.peak_mb, "eval_peak_mb": est.eval_peak_mb}
    return {**asdict(est), **derived, "step_ms": est.step_ms}


def memory_budget(cfg, device: str, measured: dict | None = None) -> tuple[float | None, str]:
    """(MB, what they are) a run of cfg must fit in: budget.memory_mb, else the device's
    (measured: the device's already measured, so every row of a table uses the same)."""
    from src.train.estimate import available_memory_mb

    if cfg.budget.memory_mb is not None:
        return cfg.budget.memory_mb, "budget.memory_mb"
    where = "this GPU's memory" if device == "cuda" else "the RAM available now"
    measured = {} if measured is None else measured
    if device not in measured:
        measured[device] = available_memory_mb(device)
    return measured[device], where


def print_multirun(combos: list[list[str]], cfgs: list, as_json: bool) -> int:
    """One row per combination, printed as it is estimated; the exit code: 1 where the step of
    some combination could not be simulated (its row says why), else 0."""
    from src.train.estimate.multirun import Table

    table, budgets, measured, failed = Table(combos), {}, {}, 0
    if not as_json:
        print(f"Estimated training peaks, {len(combos)} configurations ({sequence_note(cfgs[0])}):")
        print(table.header(), flush=True)
    for combo, cfg in zip(combos, cfgs, strict=True):
        est, why = _row_estimate(cfg)
        failed += est is None
        if as_json:
            record = {"error": why} if est is None else as_record(est)
            print(json.dumps({"overrides": combo, **record}), flush=True)
            continue
        if est is None:
            print(table.failed(combo, why), flush=True)
            continue
        budget, where = memory_budget(cfg, est.device, measured)
        budgets.setdefault(where, set()).add(budget)
        fits = None if budget is None else est.needed_mb <= budget
        print(table.row(combo, est, fits), flush=True)
    if not as_json:
        said = ", ".join(_budget_said(where, mb) for where, mb in budgets.items() if None not in mb)
        print("  peak: the tensor peak + what the allocator keeps (a row's parts: it without -m)")
        print(f"  fits: the larger of peak and eval peak within {said or 'no known budget'}")
    return 1 if failed else 0


def _budget_said(where: str, values: set) -> str:
    return f"{where} ({min(values):,.0f} MB)" if len(values) == 1 else f"{where} (each row's)"


def _row_estimate(cfg):
    """simulated_or_why, a problem of this combination's (data.batch_size=auto finding no
    micro-batch that fits) in its row rather than stopping the others."""
    from src.errors import config_error_in

    try:
        return simulated_or_why(cfg)
    except Exception as err:  # noqa: BLE001 - anything but a ConfigError is re-raised
        found = config_error_in(err)
        if found is None:
            raise
        return None, "; ".join(found.problems)


def simulated_estimate(cfg):
    """estimate(cfg); where the simulation itself fails (see simulated_or_why), one line saying
    so and exit 1, not a traceback."""
    est, why = simulated_or_why(cfg)
    if est is None:
        print(
            f"error: cannot estimate this configuration: simulating its training step on fake "
            f"tensors (shapes, no data) failed: {why}\n"
            "src.train and sweeps run it without an estimate (a sweep's budget check then lets "
            "it start).",
            file=sys.stderr,
        )
        raise SystemExit(1)
    return est


def simulated_or_why(cfg):
    """(estimate(cfg), None), or (None, why) where the simulation itself fails: a step fake
    tensors cannot run (an op whose output shape depends on the data, shape rules that refuse
    the dtype, such as the bf16-only grouped matmul of Mixtral's experts)."""
    from src.errors import config_error_in, first_line
    from src.train.estimate import estimate

    # The fake-tensor machinery logs the failing op's traceback itself: said once below instead.
    logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)
    try:
        return estimate(cfg), None
    except Exception as err:  # noqa: BLE001 - bad input is re-raised for its problem block
        if config_error_in(err) is not None:
            raise
        return None, f"{type(err).__name__}: {first_line(err)}"


def checked_config(overrides: list[str], without_bitsandbytes: bool = False):
    """Compose and validate as src.train does (every problem at once), model source included.
    without_bitsandbytes: keep bitsandbytes out of this process from the model checks on (see
    keep_bitsandbytes_out)."""
    return checked_configs([overrides], without_bitsandbytes)[0]


def checked_configs(combos: list[list[str]], without_bitsandbytes: bool = False) -> list:
    """checked_config of each combination of overrides, the problems of all of them at once
    (one that only some combinations have names the first: multirun.labelled_problems)."""
    from src.train import validate
    from src.train.config import compose_checked
    from src.train.estimate.multirun import labelled_problems

    found = [validate.command_line_problems(overrides) for overrides in combos]
    validate.raise_if(labelled_problems(found, combos))
    cfgs = [compose_checked(overrides) for overrides in combos]
    if without_bitsandbytes:
        keep_bitsandbytes_out()
    # Imported only now: the model code pulls in torch and transformers (seconds), which a
    # mistyped override should not wait for. Quieted first: some speak at import time.
    from src.train.quiet import quiet_libraries

    quiet_libraries()
    from src.train import model_checks, models

    found = []
    for cfg in cfgs:
        source, kwargs = models.config_source(cfg.model)  # a GGUF model is not converted for this
        found.append(model_checks.model_problems(cfg, models.read_hf_config(source, **kwargs)))
    validate.raise_if(labelled_problems(found, combos))
    return cfgs


def keep_bitsandbytes_out() -> None:
    """Keep bitsandbytes from loading in this process. The simulation never runs its code
    (quantized layers are stand-ins, quantized.py; its 8-bit AdamW is simulated by torch's,
    step.py), but peft imports it when it is installed, and its torch.compile wrappers import
    inductor and dynamo: a median 1.8 s of the CLI's start here (bench/estimate_cli.py). A None
    in sys.modules makes find_spec() say it is absent, which peft and transformers ask (and
    cache) before importing it: so only in a process that trains nothing afterwards. Called once
    the config's values are checked, as validate.py asks the same to tell a user without
    bitsandbytes to install it."""
    sys.modules.setdefault("bitsandbytes", None)


def title(cfg, device: str) -> str:
    adapter = cfg.adapter.name
    if cfg.adapter.peft is not None and "r" in cfg.adapter.peft:
        adapter += f" r{cfg.adapter.peft.r}"
    base = "" if cfg.quant.name == "none" else f" on a {cfg.quant.name} base"
    checkpointing = ", activation checkpointing" if cfg.activation_checkpointing else ""
    return (
        f"Estimated training peak: model={cfg.model.name} adapter={adapter}{base}, "
        f"precision={cfg.precision.name}, optim={cfg.optim.optimizer._target_.split('.')[-1]}"
        f"{checkpointing}, on {device}"
    )


def sequence_note(cfg) -> str:
    if cfg.data.pad_to_max_length:
        return "data.pad_to_max_length: every batch has this length"
    return "data.max_length; batches are padded to their longest row, so this is the worst case"
