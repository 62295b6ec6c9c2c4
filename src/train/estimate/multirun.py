"""`python -m src.estimate -m KEY=A,B ...`: every combination of the swept values, as
`python -m src.train -m` would run them, estimated in one process, one table row each. The
imports (torch and transformers, ~8 s on a 2-core CPU) are paid once, so each further configuration
costs its simulation only (bench/estimate_cli.py)."""

from __future__ import annotations

from src.errors import ConfigError, first_line

COLUMNS = ("batch", "seq", "tensor peak MB", "peak MB", "eval peak MB", "step ms", "fits")


def combinations(overrides: list[str]) -> list[list[str]]:
    """Every combination of the swept values, made as Hydra's basic sweeper makes src.train's
    (`a=1,2 b=x,y` is four override lists, the last key varying fastest; `range(8,33,8)`,
    `choice(...)` and `glob(...)` over a config group's options sweep too)."""
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from src.train.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        # glob(...) lists a group's options through the config loader
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        problems = [_sweep_problem(parser, text) for text in overrides]
        if problems := [p for p in problems if p]:
            raise ConfigError(problems)
        return BasicSweeper.split_arguments(parser.parse_overrides(overrides), None)[0]


def _sweep_problem(parser, text: str) -> str | None:
    """What is wrong with one override as a sweep (its syntax, a sweep kind -m cannot list)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    try:
        BasicSweeper.split_arguments(parser.parse_overrides([text]), None)
    except Exception as err:  # noqa: BLE001 - Hydra's parse and sweep errors have many types
        allowed = "lists (a,b), range(start,stop,step), choice(a,b) and glob(pattern)"
        return f"{text}: {first_line(err)}; -m sweeps {allowed}"
    return None


def swept(combos: list[list[str]]) -> list[int]:
    """Positions of the overrides whose value differs between combinations (all combinations
    list the same keys in the same order)."""
    return [i for i in range(len(combos[0])) if len({c[i] for c in combos}) > 1]


def label(combo: list[str], positions: list[int]) -> str:
    return " ".join(combo[i] for i in positions)


def labelled_problems(found: list[list[str]], combos: list[list[str]]) -> list[str]:
    """The problems of every combination, each once: one that every combination has as it is,
    one that only some have led by the swept values those share (`[quant=nf4] ...`)."""
    positions, lines = swept(combos), []
    for problem in dict.fromkeys(p for problems in found for p in problems):
        having = [c for c, problems in zip(combos, found, strict=True) if problem in problems]
        if len(having) == len(combos):
            lines.append(problem)
            continue
        shared = [i for i in positions if len({c[i] for c in having}) == 1]
        lines.append(f"[{label(having[0], shared or positions)}] {problem}")
    return lines


class Table:
    """The rows printed as each estimate is made (a long sweep shows its progress): the swept
    overrides, then the columns of COLUMNS."""

    def __init__(self, combos: list[list[str]]):
        self.positions = swept(combos)
        self.keys = [combos[0][i].partition("=")[0] for i in self.positions]
        self.widths = [
            max(len(key), *(len(c[i].partition("=")[2]) for c in combos))
            for key, i in zip(self.keys, self.positions, strict=True)
        ] + [max(len(name), 7) for name in COLUMNS]

    def header(self) -> str:
        return self._line([*self.keys, *COLUMNS])

    def row(self, combo: list[str], est, fits: bool | None) -> str:
        step = "n/a" if est.step_ms is None else f"{est.step_ms:,.0f}"
        verdict = "n/a" if fits is None else "yes" if fits else "NO"
        numbers = [
            f"{est.batch_size}",
            f"{est.sequence}",
            f"{est.tensor_peak_mb:,.1f}",
            f"{est.peak_mb:,.1f}",
            f"{est.eval_peak_mb:,.1f}",
            step,
            verdict,
        ]
        return self._line([*self._values(combo), *numbers])

    def failed(self, combo: list[str], why: str) -> str:
        values = self._line(self._values(combo))
        return f"{values}  cannot estimate: {why}"

    def _values(self, combo: list[str]) -> list[str]:
        return [combo[i].partition("=")[2] for i in self.positions]

    def _line(self, cells: list[str]) -> str:
        swept_cells = len(self.positions)
        parts = [
            cell.ljust(width) if n < swept_cells else cell.rjust(width)
            for n, (cell, width) in enumerate(zip(cells, self.widths, strict=False))
        ]
        return "  " + "  ".join(parts).rstrip()
