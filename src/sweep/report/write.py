"""Write the report of a study: files under mlruns/reports/<study>/, the console summary, and
the same files on the sweep's MLflow parent run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from src.sweep.report.plots import write_html, write_png
from src.sweep.report.recommend import recommendation
from src.sweep.report.table import format_table, trial_table

FILES = ("report.html", "report.md", "trials.csv", "pareto.csv", "pareto.png")


def write_report(study, out_dir: str | Path | None = None) -> Path | None:
    """Write and log everything; returns the report folder (None when no trial finished)."""
    frame = trial_table(study)
    root = Path(study.user_attrs.get("reports_root", "mlruns"))
    out = Path(out_dir) if out_dir else root / "reports" / study.study_name
    if frame.empty:
        print(f"[report] study '{study.study_name}': no finished trial yet, nothing to report")
        return None
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "trials.csv", index=False)
    frame[frame["pareto"]].to_csv(out / "pareto.csv", index=False)
    text = recommendation(frame, study.study_name)
    (out / "report.md").write_text(text + "\n")
    write_png(frame, out / "pareto.png")
    for note in write_html(study, frame, text, out / "report.html"):
        print(f"[report] skipped {note}")
    print(
        f"\nBest trial per method, study '{study.study_name}' (pareto: on the accuracy x "
        "memory x time front; tied: the 95% interval of the difference from the best contains 0)"
    )
    print(format_table(frame))
    print(f"\n{text}\n")
    _log_to_parent(study, [out / name for name in FILES], frame)
    print(f"[report] written to {out} (open report.html)")
    return out


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
