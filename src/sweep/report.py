"""Sweep report: Pareto front of accuracy (max) x peak memory (min) x train time (min) over
COMPLETE trials, as PNG + interactive HTML + CSV, a terminal table of the best trial per method,
and Optuna's own plots; all logged to the sweep's MLflow parent run.

    python -m src.report study_name=S [storage=URL] [out=DIR]   (or python -m src.sweep report)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from src.errors import ConfigError, exit_on_config_error
from src.sweep import DEFAULT_STORAGE

AXES = [("val/acc", "max"), ("mem/peak_mb", "min"), ("time/train_s", "min")]


def trial_table(study) -> pd.DataFrame:
    """One row per COMPLETE trial with its params and the metrics the child reported."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name != "COMPLETE":
            continue
        metrics = t.user_attrs.get("metrics", {})
        rows.append(
            {
                "trial": t.number,
                "method": t.user_attrs.get("method") or "-",
                **{
                    f"param.{k}": v
                    for k, v in {**t.params, **t.user_attrs.get("fixed", {})}.items()
                },
                **{
                    k: metrics.get(k)
                    for k in (
                        "val/acc",
                        "test/acc",
                        "mem/peak_mb",
                        "time/train_s",
                        "params/trainable",
                    )
                },
                "run_id": t.user_attrs.get("run_id"),
            }
        )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["pareto"] = pareto_mask(frame)
    return frame


def pareto_mask(frame: pd.DataFrame, axes=AXES) -> list[bool]:
    """True where no other row is at least as good on every axis and better on one."""
    signed = [[(r[k] if d == "max" else -r[k]) for k, d in axes] for _, r in frame.iterrows()]

    def dominated(a):
        return any(
            all(b_i >= a_i for a_i, b_i in zip(a, b, strict=True))
            and any(b_i > a_i for a_i, b_i in zip(a, b, strict=True))
            for b in signed
        )

    return [not dominated(a) for a in signed]


def best_per_method(frame: pd.DataFrame) -> pd.DataFrame:
    best = frame.sort_values("val/acc", ascending=False).groupby("method", sort=False).head(1)
    return best[
        [
            "method",
            "trial",
            "val/acc",
            "test/acc",
            "mem/peak_mb",
            "time/train_s",
            "params/trainable",
            "pareto",
        ]
    ].reset_index(drop=True)


def write_pareto_png(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers/CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = ax.scatter(
        frame["mem/peak_mb"],
        frame["val/acc"],
        c=frame["time/train_s"],
        cmap="viridis",
        s=[90 if p else 35 for p in frame["pareto"]],
        edgecolors=["black" if p else "none" for p in frame["pareto"]],
    )
    for _, row in frame[frame["pareto"]].iterrows():
        ax.annotate(
            f"#{row['trial']} {row['method']}",
            (row["mem/peak_mb"], row["val/acc"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    fig.colorbar(points, label="train time (s)")
    ax.set(
        xlabel="peak memory (MB)",
        ylabel="val accuracy",
        title="Pareto front: accuracy x memory x time (outlined)",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_pareto_html(frame: pd.DataFrame, path: Path) -> None:
    import plotly.express as px

    fig = px.scatter(
        frame,
        x="mem/peak_mb",
        y="val/acc",
        color="time/train_s",
        symbol="pareto",
        hover_data=[c for c in frame.columns if c not in ("run_id",)],
        title="Pareto front: accuracy x memory x time (pareto=True)",
    )
    fig.write_html(path, include_plotlyjs=True)  # inline: opens offline


def write_optuna_plots(study, out_dir: Path) -> list[Path]:
    """Optuna's plots in one offline HTML page (plotly.js, ~5 MB, inlined once rather than per
    plot); a plot is skipped (with a note) when the study has too few trials for it."""
    import optuna.visualization as vis

    multi = len(study.directions) > 1
    kwargs = {"target": (lambda t: t.values[0]), "target_name": "objective 0"} if multi else {}
    parts = []
    for name, plot in (
        ("optimization history", vis.plot_optimization_history),
        ("parameter importances", vis.plot_param_importances),
        ("parallel coordinates", vis.plot_parallel_coordinate),
    ):
        try:
            fig = plot(study, **kwargs)
            parts.append(fig.to_html(full_html=False, include_plotlyjs=not parts))
        except Exception as err:  # noqa: BLE001 - e.g. too few complete trials for importances
            print(
                f"[report] skipped {name}: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
            )
    if not parts:
        return []
    path = out_dir / "optuna_plots.html"
    path.write_text(
        f"<html><head><meta charset='utf-8'><title>{study.study_name}</title></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )
    return [path]


def write_report(study, out_dir: str | Path | None = None) -> Path | None:
    """Write and log everything; returns the report folder (None when no trial completed)."""
    frame = trial_table(study)
    root = Path(study.user_attrs.get("reports_root", "mlruns"))
    out = Path(out_dir) if out_dir else root / "reports" / study.study_name
    out.mkdir(parents=True, exist_ok=True)
    if frame.empty:
        print(f"[report] study '{study.study_name}': no COMPLETE trials, nothing to plot")
        return None
    frame.to_csv(out / "trials.csv", index=False)
    frame[frame["pareto"]].to_csv(out / "pareto.csv", index=False)
    write_pareto_png(frame, out / "pareto.png")
    write_pareto_html(frame, out / "pareto.html")
    files = [out / n for n in ("trials.csv", "pareto.csv", "pareto.png", "pareto.html")]
    files += write_optuna_plots(study, out)
    print_table(study.study_name, frame)
    _log_to_parent(study, files, frame)
    print(f"[report] written to {out}")
    return out


def print_table(name: str, frame: pd.DataFrame) -> None:
    best = best_per_method(frame)
    print(
        f"\nBest trial per method, study '{name}' "
        "(* = on the accuracy x memory x time Pareto front)"
    )
    print(
        best.to_string(
            index=False,
            float_format=lambda v: f"{v:.4g}",
            formatters={"pareto": lambda p: "*" if p else ""},
        )
    )


def _log_to_parent(study, files: list[Path], frame: pd.DataFrame) -> None:
    run_id, uri = (
        study.user_attrs.get("mlflow_parent_run_id"),
        study.user_attrs.get("mlflow_tracking_uri"),
    )
    if not run_id or not uri:
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    for path in files:
        client.log_artifact(run_id, str(path), "report")
    client.set_tag(
        run_id, "pareto_front_trials", ",".join(str(t) for t in frame[frame["pareto"]]["trial"])
    )


USAGE = """usage: python -m src.report study_name=S [storage=URL] [out=DIR]
       (also: python -m src.sweep report ..., ftsweep-report ...)

Writes the tradeoff report of a stored sweep: trials.csv, pareto.csv/png/html, optuna_plots.html
under OUT (default mlruns/reports/S/), prints the best trial per method, and logs the files to the
sweep's MLflow parent run.
  study_name  the sweep's study name (required)
  storage     Optuna storage URL [sqlite:///mlruns/optuna.db]
  out         folder for the files [mlruns/reports/<study_name>]"""
REPORT_KEYS = ("study_name", "storage", "out")


def main(argv: list[str] | None = None) -> Path | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return None
    with exit_on_config_error():
        study = _load(_report_args(argv))
    return write_report(study, _report_args(argv).get("out"))


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


def _load(args: dict[str, str]):
    """The stored study; nothing is created in the storage when it is not there."""
    import optuna

    from src.sweep.preflight.storage import display_url, storage_problems
    from src.sweep.preflight.study import stored_study_exists

    storage = args.get("storage", DEFAULT_STORAGE)
    problems = storage_problems(storage)
    if not problems and not stored_study_exists(args["study_name"], storage):
        problems.append(f"no study '{args['study_name']}' in {display_url(storage)}")
    if problems:
        raise ConfigError(problems)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=args["study_name"], storage=storage)


def entry() -> None:
    """Console script ftsweep-report (main returns the report folder, not an exit code)."""
    main()
