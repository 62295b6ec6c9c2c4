"""Sweep entry: python -m src.sweep sweep=NAME [n_trials=N] [study_name=S] [storage=URL]
[timeout=SEC] [quiet=true] [report=false] [workers=N] [max_failures=N] [oom.retry=true]
[heartbeat_s=SEC] [allow_space_change=true] [any Hydra override applied to every trial].

Runs sweeps/NAME.yaml as an Optuna study (resumed when study_name exists in storage), one child
process per trial, then writes the Pareto report. See docs/sweeps.md.
"""

from __future__ import annotations

import sys

from src.errors import ConfigError

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
SWEEP_KEYS = {"sweep", "n_trials", "study_name", "storage", "timeout", "quiet", "report", "workers",
              "max_failures", "oom.retry", "heartbeat_s", "allow_space_change"}
INTS = {"n_trials": 1, "workers": 1, "max_failures": 0, "heartbeat_s": 1}  # key -> smallest allowed
BOOLS = ("quiet", "report", "oom.retry", "allow_space_change")


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
    for key, low in INTS.items():
        if key in settings:
            try:
                settings[key] = int(settings[key])
                if settings[key] < low:
                    raise ValueError
            except ValueError:
                problems.append(f"{key}={settings[key]!r}: must be an integer >= {low}")
    if "timeout" in settings:
        try:
            settings["timeout"] = float(settings["timeout"])
        except ValueError:
            problems.append(f"timeout={settings['timeout']!r}: must be a number of seconds")
    for key in BOOLS:
        if key in settings:
            if settings[key].lower() not in ("1", "true", "yes", "0", "false", "no"):
                problems.append(f"{key}={settings[key]!r}: must be true or false")
            settings[key] = settings[key].lower() in ("1", "true", "yes")
    settings.setdefault("sweep", "default")
    if problems:
        raise ConfigError(problems)
    return settings, overrides


def main(argv: list[str] | None = None):
    """Every input is checked before anything runs; exit codes: 1 bad input or a trial bug that
    stopped the sweep, 130 interrupted (Ctrl-C / SIGTERM; resumable)."""
    from src.sweep_spec import load_spec

    try:
        settings, overrides = parse_args(sys.argv[1:] if argv is None else argv)
        spec = load_spec(settings["sweep"], overrides)
        spec.max_failures = settings.get("max_failures", spec.max_failures)
        spec.oom_retry = settings.get("oom.retry", spec.oom_retry)
        study_name = settings.get("study_name", spec.name)
        storage = settings.get("storage", DEFAULT_STORAGE)
        from src.sweep_preflight import preflight

        preflight(spec, overrides, study_name, storage, settings.get("allow_space_change", False))
    except ConfigError as err:
        sys.exit(f"error: {err}")
    from src import interrupts
    from src.report import write_report
    from src.sweep_driver import SweepAborted, run_sweep

    try:
        with interrupts.installed():  # Ctrl-C / SIGTERM: stop at the next safe point, resumable
            study = run_sweep(spec, study_name, storage, n_trials=settings.get("n_trials"),
                              timeout=settings.get("timeout"), quiet=settings.get("quiet", False),
                              overrides=overrides, workers=settings.get("workers", 1),
                              heartbeat_s=settings.get("heartbeat_s"))
    except SweepAborted as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        sys.exit(130)
    if settings.get("report", True):
        write_report(study)
    return study


if __name__ == "__main__":
    main()
