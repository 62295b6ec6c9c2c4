"""python -m src.train [OVERRIDE ...]   (console script: ftsweep-train)

    python -m src.train +experiment=qlora_r8 trainer.max_steps=50
    python -m src.train -m adapter=lora,ia3 seed=1,2     # Hydra multirun, one run after another
    python -m src.train --help

Group options are checked before Hydra runs, every problem at once; bad input of any kind (config,
model, data) prints one `error: N problem(s)` block and exits 2.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from src.errors import exit_on_config_error
from src.train.config import CONF_DIR, override_problems
from src.train.validate import command_line_problems, raise_if

MULTIRUN_FLAGS = ("-m", "--multirun")


def precheck_problems(argv: list[str]) -> list[str]:
    """Problems we can name before Hydra starts. Hydra's own modes (--help, -sc, --cfg, --info)
    are left to Hydra; a multirun's values are checked as options only (they do not compose)."""
    flags = [a for a in argv if a.startswith("-")]
    overrides = [a for a in argv if not a.startswith("-")]
    if any(f not in MULTIRUN_FLAGS for f in flags):
        return []
    if flags:
        return override_problems(overrides)
    return command_line_problems(overrides)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    from src.train.quiet import quiet_libraries

    quiet_libraries()  # before torch/transformers/lightning are imported
    import torch

    from src.train.run import train

    torch.set_float32_matmul_precision("high")
    with exit_on_config_error():
        return train(cfg).get("val/acc", float("nan"))


def main() -> None:
    with exit_on_config_error():
        raise_if(precheck_problems(sys.argv[1:]))
    _hydra_main()


if __name__ == "__main__":
    main()
