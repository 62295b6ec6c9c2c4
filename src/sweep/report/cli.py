"""python -m src.report study_name=S [storage=URL] [out=DIR]   (or python -m src.sweep report,
or ftsweep-report): the report of a stored sweep, again and from any machine that reaches its
storage. Nothing is created in the storage when the study is not there."""

from __future__ import annotations

import sys
from pathlib import Path

from src.errors import ConfigError, exit_on_config_error
from src.sweep import default_storage
from src.sweep.report.write import write_report

USAGE = """usage: python -m src.report study_name=S [storage=URL] [out=DIR]
       (also: python -m src.sweep report ..., ftsweep-report ...)

Writes the tradeoff report of a stored sweep under OUT (default mlruns/reports/S/): report.html
(everything, one self-contained page), report.md (the recommendation), trials.csv (every trial),
pareto.csv, pareto.png; prints the best trial per method and the recommendation, and logs the
files to the sweep's MLflow parent run.
  study_name  the sweep's study name (required)
  storage     Optuna storage URL [$FTSWEEP_STORAGE if set, else sqlite:///mlruns/optuna.db]
  out         folder for the files [mlruns/reports/<study_name>]"""
REPORT_KEYS = ("study_name", "storage", "out")


def main(argv: list[str] | None = None) -> Path | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return None
    from src.sweep.preflight.study import load_stored_study  # here: --help answers at once

    with exit_on_config_error():
        args = _report_args(argv)
        study = load_stored_study(args["study_name"], args.get("storage") or default_storage())
    return write_report(study, args.get("out"))


def _report_args(argv: list[str]) -> dict[str, str]:
    args, problems = {}, []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in REPORT_KEYS:
            problems.append(
                f"'{arg}': expected one of {', '.join(k + '=...' for k in REPORT_KEYS)}"
            )
        args[key] = value
    if "study_name" not in args:
        problems.append("study_name=S is required (the sweep's study name)")
    if problems:
        raise ConfigError(problems)
    return args


def entry() -> None:
    """Console script ftsweep-report (main returns the report folder, not an exit code)."""
    main()
