"""The sweep's command line: `python -m src.sweep [SETTING=VALUE ...] [OVERRIDE ...]` (console
script: ftsweep-sweep). Settings are this table; every other key=value is a Hydra override
applied to every trial. Every input is checked before anything runs."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

from src.errors import ConfigError, exit_on_config_error
from src.sweep import STORAGE_ENV, default_storage

EXIT_ABORTED = 1  # a trial bug stopped the sweep (SweepAborted)
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: resumable
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")


@dataclass(frozen=True)
class Setting:
    key: str
    kind: type
    doc: str
    # None: the sweep file's value, or what the doc says; a function: called at parse time
    # (a default read from the environment of this invocation)
    default: object = None
    minimum: int | None = None

    def resolved_default(self):
        return self.default() if callable(self.default) else self.default


SETTINGS = [
    Setting("sweep", str, "name in sweeps/ or a path to a .yaml file", "default"),
    Setting(
        "n_trials",
        int,
        "total finished trials wanted in the study (default: the file's)",
        minimum=1,
    ),
    Setting(
        "study_name",
        str,
        "Optuna study name; an existing one is resumed (default: the sweep's name)",
    ),
    Setting(
        "storage",
        str,
        f"Optuna storage URL, or grpc://HOST:PORT for serve-storage's proxy (default: "
        f"${STORAGE_ENV} if set, else the SQLite file)",
        default_storage,
    ),
    Setting("timeout", float, "no trial starts after this many seconds (default: the file's)"),
    Setting(
        "verbose",
        bool,
        "true: each trial's output (Lightning's bar, warnings) shows live; by default it goes to "
        "the trial's log file (mlruns/sweeps/<study>/trial-NNNN.log, also on its MLflow run)",
        False,
    ),
    Setting("report", bool, "false: skip the report at the end", True),
    Setting("workers", int, "driver processes on this study", 1, minimum=1),
    Setting(
        "max_failures",
        int,
        "unexpected trial errors tolerated before the sweep stops (default: the file's, else 0)",
        minimum=0,
    ),
    Setting(
        "oom.retry",
        bool,
        "true: retry an out-of-memory trial once with a smaller micro-batch the estimate picks "
        "(default: the file's)",
    ),
    Setting(
        "heartbeat_s",
        int,
        "seconds between heartbeats; a trial is stale after 3 missed (default 20)",
        minimum=1,
    ),
    Setting(
        "confirm.top",
        int,
        "after the search, train the N best configurations again with more seeds (cost: "
        "top x seeds more trial runs)",
        0,
        minimum=0,
    ),
    Setting(
        "confirm.seeds", int, "how many more seeds each confirmed configuration gets", 2, minimum=1
    ),
    Setting(
        "allow_space_change", bool, "true: resume a study although its search space changed", False
    ),
    Setting(
        "budget.memory_mb",
        float,
        "a trial whose estimated peak memory exceeds this is pruned over_budget unlaunched "
        "(default: the file's, else the GPU's memory, or the RAM available / workers on CPU)",
        minimum=1,
    ),
    Setting(
        "budget.step_ms",
        float,
        "likewise for the estimated time per training step (default: the file's, else none)",
        minimum=1,
    ),
    Setting(
        "launcher",
        str,
        "local: the workers are processes here; slurm: a SLURM job array of `workers` jobs, "
        "each a driver on the shared storage (docs/cluster.md)",
        "local",
    ),
    Setting("launcher.partition", str, "slurm: the partition (default: the cluster's)"),
    Setting("launcher.gpus_per_worker", int, "slurm: GPUs per worker job", 0, minimum=0),
    Setting("launcher.cpus_per_worker", int, "slurm: CPUs per worker job", minimum=1),
    Setting("launcher.mem_gb", float, "slurm: memory per worker job, GB", minimum=0.1),
    Setting("launcher.time_min", int, "slurm: time limit per worker job, minutes", 60, minimum=1),
    Setting("launcher.account", str, "slurm: the account to charge"),
    Setting("launcher.qos", str, "slurm: the quality of service"),
    Setting(
        "launcher.sbatch",
        str,
        "slurm: more sbatch options, comma-separated: 'constraint=a100,exclusive'",
    ),
    Setting(
        "follow",
        bool,
        "slurm: false submits and returns; `python -m src.sweep status study_name=S` follows",
        True,
    ),
]
COMMANDS = {
    "report": "src.sweep.report:main",
    "status": "src.sweep.status:status_main",
    "serve-storage": "src.sweep.grpc_server:serve_main",
}
SLURM_ONLY = [s.key for s in SETTINGS if s.key.startswith("launcher.")] + ["follow"]
BY_KEY = {s.key: s for s in SETTINGS}
EXAMPLES = """examples:
  python -m src.sweep                                  # sweeps/default.yaml on the embedded MiniLM
  python -m src.sweep sweep=lora_rank_lr n_trials=30
  python -m src.sweep sweep=default model=tiny_bert trainer.max_steps=5 n_trials=3
  python -m src.sweep report study_name=default        # the report again (= python -m src.report)
  python -m src.sweep launcher=slurm workers=4 launcher.gpus_per_worker=1 follow=false
  python -m src.sweep status study_name=default        # follow a SLURM sweep (cancel=true stops it)
docs: docs/sweeps.md, docs/cluster.md"""


def help_text() -> str:
    width = max(len(s.key) for s in SETTINGS) + 7
    lines = [
        "usage: python -m src.sweep [SETTING=VALUE ...] [HYDRA_OVERRIDE ...]",
        "       python -m src.sweep report study_name=S [storage=URL] [out=DIR]",
        "       python -m src.sweep status study_name=S [storage=URL] [follow=false] [cancel=true]",
        "       python -m src.sweep serve-storage [storage=URL] [host=H] [port=P]  (gRPC proxy)",
        "",
        "Runs sweeps/NAME.yaml as an Optuna study, one process per trial, then writes the",
        "tradeoff report. Any key=value that is not a setting is a Hydra override applied to",
        "every trial (after the file's `base`).",
        "",
        "settings:",
    ]
    for s in SETTINGS:
        value = s.resolved_default()
        default = "" if value is None else f" [{_show(value)}]"
        lines.append(f"  {(s.key + '=' + s.kind.__name__.upper()):<{width}} {s.doc}{default}")
    return "\n".join([*lines, "", EXAMPLES])


def _show(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    password = urlsplit(str(value)).password if "://" in str(value) else None
    return str(value).replace(f":{password}@", ":***@", 1) if password else str(value)


def parse_args(argv: list[str]) -> tuple[dict, list[str]]:
    """Split key=value args into the sweep's own settings (typed; only those given, plus
    `sweep`) and trial overrides; every malformed one is reported at once."""
    settings, overrides, problems = {}, [], []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            problems.append(
                f"'{arg}': expected key=value (settings: {', '.join(BY_KEY)}; see --help)"
            )
        elif key in BY_KEY:
            parsed, problem = _parse(BY_KEY[key], value)
            settings[key] = parsed
            problems += [problem] if problem else []
        else:
            overrides.append(arg)
    settings.setdefault("sweep", BY_KEY["sweep"].default)
    if problems:
        raise ConfigError(problems)
    return settings, overrides


def _parse(setting: Setting, text: str) -> tuple[object, str | None]:
    if setting.kind is bool:
        if text.lower() not in TRUE + FALSE:
            return text, f"{setting.key}={text!r}: must be true or false"
        return text.lower() in TRUE, None
    if setting.kind is str:  # empty would be taken as a name: an unnamed study, a path ''
        return text, None if text.strip() else f"{setting.key}='': must not be empty (leave it out)"
    try:
        value = setting.kind(text)
    except ValueError:
        value = None
    if value is None or (setting.minimum is not None and value < setting.minimum):
        low = f" >= {setting.minimum}" if setting.minimum is not None else ""
        noun = "an integer" if setting.kind is int else "a number"
        shown = text if value is None else value
        return text, f"{setting.key}={shown!r}: must be {noun}{low}"
    return value, None


def main(argv: list[str] | None = None):
    """Exit codes: 0 done, 2 bad input (nothing ran), 1 a trial bug stopped the sweep,
    130 interrupted (Ctrl-C / SIGTERM; resume with the printed command)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in COMMANDS:  # imported on use: --help answers at once
        module, _, function = COMMANDS[argv[0]].partition(":")
        return getattr(importlib.import_module(module), function)(argv[1:])
    if any(a in ("-h", "--help", "help") for a in argv):
        print(help_text())
        return None
    with exit_on_config_error():
        settings, overrides = parse_args(argv)
        spec, study_name, storage = _checked(settings, overrides)
    return _run(spec, study_name, storage, settings, overrides)


def _checked(settings: dict, overrides: list[str]):
    """The sweep file, then everything a trial needs (src/sweep/preflight/)."""
    from src.sweep.gpus import device_problems
    from src.sweep.preflight import preflight
    from src.sweep.process.runner import fork_server_warming
    from src.sweep.slurm import launcher_problems
    from src.sweep.spec import load_spec

    early = settings.get("workers", 1) == 1 and settings.get("launcher", "local") == "local"
    with fork_server_warming(early):  # first: its imports overlap these checks (see there)
        spec = load_spec(settings["sweep"], overrides)
        spec.max_failures = settings.get("max_failures", spec.max_failures)
        spec.oom_retry = settings.get("oom.retry", spec.oom_retry)
        study_name = settings.get("study_name", spec.name)
        storage = settings["storage"] if "storage" in settings else default_storage()
        problems = launcher_problems(settings, storage, SLURM_ONLY)
        problems += [] if problems else device_problems(spec, overrides, settings)
        if problems:
            raise ConfigError(problems)
        preflight(spec, overrides, study_name, storage, settings.get("allow_space_change", False))
    return spec, study_name, storage


def _run(spec, study_name: str, storage: str, settings: dict, overrides: list[str]):
    from src.sweep import interrupts
    from src.sweep.budget import budget_settings
    from src.sweep.driver import SweepAborted
    from src.sweep.run import run_sweep
    from src.sweep.slurm import detached, resources_from

    try:
        with interrupts.installed(), exit_on_config_error():
            study = run_sweep(
                spec,
                study_name,
                storage,
                n_trials=settings.get("n_trials"),
                timeout=settings.get("timeout"),
                quiet=not settings.get("verbose", False),
                overrides=overrides,
                workers=settings.get("workers", 1),
                heartbeat_s=settings.get("heartbeat_s"),
                confirm=(settings.get("confirm.top", 0), settings.get("confirm.seeds", 2)),
                budget=budget_settings(settings),
                slurm=resources_from(settings),
                follow=settings.get("follow", True),
            )
    except SweepAborted as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_ABORTED)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    if settings.get("report", True) and not detached(study):
        from src.sweep.report import write_report  # scipy and pandas: not before trial #0

        write_report(study)
    return study


def entry() -> None:
    """Console script ftsweep-sweep (main returns the study, which is not an exit code)."""
    main()
