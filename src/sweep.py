"""Sweep entry: python -m src.sweep sweep=NAME [n_trials=N] [study_name=S] [storage=URL]
[timeout=SEC] [quiet=true] [report=false] [any Hydra override applied to every trial].

Runs sweeps/NAME.yaml as an Optuna study (resumed when study_name exists in storage), one child
process per trial, then writes the Pareto report. See docs/sweeps.md.
"""

from __future__ import annotations

import sys

from src.errors import ConfigError

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
SWEEP_KEYS = {"sweep", "n_trials", "study_name", "storage", "timeout", "quiet", "report"}


def parse_args(argv: list[str]) -> tuple[dict, list[str]]:
    """Split key=value args into the sweep's own settings and trial overrides."""
    settings, overrides, problems = {}, [], []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key in SWEEP_KEYS and sep:
            settings[key] = value
        elif sep:
            overrides.append(arg)
        else:
            problems.append(f"'{arg}': expected key=value")
    for key, cast in (("n_trials", int), ("timeout", float)):
        if key in settings:
            try:
                settings[key] = cast(settings[key])
            except ValueError:
                problems.append(f"{key}={settings[key]!r}: must be a number")
    for key in ("quiet", "report"):
        if key in settings:
            settings[key] = settings[key].lower() in ("1", "true", "yes")
    settings.setdefault("sweep", "default")
    if problems:
        raise ConfigError(problems)
    return settings, overrides


def _interrupt_on_sigterm() -> None:
    """CI cancels with SIGTERM: treat it like Ctrl-C so the trial and MLflow runs get closed."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None):
    from src.sweep_spec import load_spec

    try:
        settings, overrides = parse_args(sys.argv[1:] if argv is None else argv)
        spec = load_spec(settings["sweep"], overrides)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    from src.report import write_report
    from src.sweep_driver import run_sweep

    _interrupt_on_sigterm()
    study_name = settings.get("study_name", spec.name)
    storage = settings.get("storage", DEFAULT_STORAGE)
    study = run_sweep(spec, study_name, storage, n_trials=settings.get("n_trials"),
                      timeout=settings.get("timeout"), quiet=settings.get("quiet", False),
                      overrides=overrides)
    if settings.get("report", True):
        write_report(study)
    return study


if __name__ == "__main__":
    main()
