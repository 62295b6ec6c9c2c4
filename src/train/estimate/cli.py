"""python -m src.estimate [OVERRIDE ...] [--json]   (console script: ftsweep-estimate)

The expected peak training memory and step time of the run `python -m src.train` would start
with the same overrides, in seconds, without loading any weights. Bad input prints the same
`error: N problem(s)` block as src.train and exits 2.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict

from src.errors import ConfigError, exit_on_config_error

USAGE = __doc__.split("\n\n")[0]


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
        print("  python -m src.estimate model=hf model.name_or_path=DIR task=generation \\")
        print("      adapter=lora quant=nf4 trainer=gpu data.batch_size=4 data.max_length=2048")
        return
    as_json = "--json" in argv
    overrides = [a for a in argv if a != "--json"]
    with exit_on_config_error():
        if flags := [a for a in overrides if a.startswith("-")]:
            allowed = "src.estimate takes key=value overrides and --json (see --help)"
            raise ConfigError([f"{flag}: not an option; {allowed}" for flag in flags])
        cfg = checked_config(overrides, without_bitsandbytes=program)
        from src.train.estimate import available_memory_mb, format_estimate

        est = simulated_estimate(cfg)
    given = cfg.budget.memory_mb
    budget = given if given is not None else available_memory_mb(est.device)
    if as_json:
        derived = {"peak_mb": est.peak_mb, "eval_peak_mb": est.eval_peak_mb}
        print(json.dumps({**asdict(est), **derived, "step_ms": est.step_ms}))
        return
    print(format_estimate(est, title(cfg, est.device), sequence_note(cfg)))
    if cfg.data.batch_size == "auto":
        effective = cfg.data.effective_batch_size
        print(
            f"data.batch_size=auto: micro-batch {est.batch_size} x {effective // est.batch_size} "
            f"accumulated = {effective} per optimizer step"
        )
    if budget is not None:
        verdict = "fits in" if est.needed_mb <= budget else "does NOT fit in"
        where = (
            "budget.memory_mb"
            if given is not None
            else "this GPU's memory"
            if est.device == "cuda"
            else "the RAM available now"
        )
        print(f"{verdict} {where}: {budget:,.0f} MB")


def simulated_estimate(cfg):
    """estimate(cfg); where the simulation itself fails (a step fake tensors cannot run: an op
    whose output shape depends on the data, shape rules that refuse the dtype, such as the
    bf16-only grouped matmul of Mixtral's experts), one line saying so and exit 1, not a
    traceback."""
    from src.errors import config_error_in, first_line
    from src.train.estimate import estimate

    # The fake-tensor machinery logs the failing op's traceback itself: said once below instead.
    logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)
    try:
        return estimate(cfg)
    except Exception as err:  # noqa: BLE001 - bad input is re-raised for its problem block
        if config_error_in(err) is not None:
            raise
        print(
            f"error: cannot estimate this configuration: simulating its training step on fake "
            f"tensors (shapes, no data) failed: {type(err).__name__}: {first_line(err)}\n"
            "src.train and sweeps run it without an estimate (a sweep's budget check then lets "
            "it start).",
            file=sys.stderr,
        )
        raise SystemExit(1) from None


def checked_config(overrides: list[str], without_bitsandbytes: bool = False):
    """Compose and validate as src.train does (every problem at once), model source included.
    without_bitsandbytes: keep bitsandbytes out of this process from the model checks on (see
    keep_bitsandbytes_out)."""
    from src.train import validate
    from src.train.config import compose_checked

    validate.raise_if(validate.command_line_problems(overrides))
    cfg = compose_checked(overrides)
    if without_bitsandbytes:
        keep_bitsandbytes_out()
    # Imported only now: the model code pulls in torch and transformers (seconds), which a
    # mistyped override should not wait for. Quieted first: some speak at import time.
    from src.train.quiet import quiet_libraries

    quiet_libraries()
    from src.train import model_checks, models

    source, kwargs = models.config_source(cfg.model)  # a GGUF model is not converted for this
    validate.raise_if(model_checks.model_problems(cfg, models.read_hf_config(source, **kwargs)))
    return cfg


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
