"""Sweep efficiency against what users would pick instead, side by side on the embedded default.

    python bench/peers.py [--seeds 0,1] [--arms ours,hf,processes] [--budget 660] [--smoke]
                          [--base model=smollm2 trainer=gpu]   # the same search elsewhere

The same search three ways: the default sweep's space (method x lr x rank x precision, the same
conditions), its enqueued starts, data, per-trial cap and wall budget, TPE with the same seed
and startup trials. Arms, each alone on the machine, one after another, each a fresh process:
  ours       python -m src.sweep sweep=<the file, sampler seed set> (as shipped: fork-server
             trial processes, the file's grouped median pruner, report off)
  hf         bench/peer_hf.py: Trainer.hyperparameter_search(backend="optuna"), model_init,
             HF's own pruning (trial.report at every evaluation, the file's median rule)
  processes  bench/peer_processes.py: `python -m src.train` per trial, no pruning (Hydra
             multirun with the Optuna sweeper)
Every trial's start, first optimizer step, end, state, val acc and peak memory (as each tool
reports it) go to bench/results/peers.json, with the anytime curves (best val acc found vs wall
time since the arm's command started) and the ratios: time for ours to reach the peer's final
best / time the peer took to reach it (median over seeds). PNG: bench/results/peers.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "mlruns" / "bench-peers"  # each arm's stores and logs (git-ignored)
ARMS = ("ours", "hf", "processes")
# hf_memory: peer (a) with HF's memory tracker on (skip_memory_metrics=False), to show its cost.
SCRIPTS = {"hf": ["peer_hf.py"], "hf_memory": ["peer_hf.py", "--memory-metrics"]}
SCRIPTS["processes"] = ["peer_processes.py"]
# Validation rows of the default sweep (data.max_eval_samples): val acc moves in 1/VAL_ROWS steps.
VAL_ROWS = next(
    int(o.split("=")[1])
    for o in yaml.safe_load((ROOT / "sweeps" / "default.yaml").read_text())["base"]
    if o.startswith("data.max_eval_samples=")
)
SMOKE = {"n_trials": 2, "timeout": 90, "base": ["data.max_train_samples=96"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--budget", type=float, default=None, help="seconds (default: the file's)")
    parser.add_argument("--smoke", action="store_true", help="2 tiny trials per arm: a check")
    parser.add_argument(
        "--base", nargs="*", default=[], help="overrides added to every arm's base (model, GPU)"
    )
    parser.add_argument("--out", default=str(RESULTS / "peers.json"))
    parser.add_argument(
        "--summarise", nargs="*", metavar="RUN_DIR", help="no new runs: these arms' saved runs"
    )
    args = parser.parse_args()
    if args.summarise is not None:
        runs = [json.loads((Path(d) / "run.json").read_text()) for d in args.summarise]
    else:
        runs = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            for arm in args.arms.split(","):
                spec_path = seeded_spec(seed, args.smoke, args.base)
                print(f"[peers] seed {seed} arm {arm} ...", flush=True)
                runs.append(run_arm(arm, seed, spec_path, args.budget))
                print(f"[peers]   {describe(runs[-1])} ({runs[-1]['dir']})", flush=True)
    result = summarise(runs)
    result["base"] = args.base
    Path(args.out).write_text(json.dumps(result, indent=1))
    plot(runs, Path(args.out).with_suffix(".png"), " ".join(args.base))
    print(markdown(result))


def seeded_spec(seed: int, smoke: bool, base: list[str] = ()) -> Path:
    """sweeps/default.yaml with the sampler's seed set, `base` added to its base (another model,
    trainer=gpu), and shrunk for --smoke."""
    spec = yaml.safe_load((ROOT / "sweeps" / "default.yaml").read_text())
    spec["sampler"]["seed"] = seed
    spec["base"] = [*spec["base"], *base]
    if smoke:
        spec.update(n_trials=SMOKE["n_trials"], timeout=SMOKE["timeout"])
        spec["base"] = [*spec["base"], *SMOKE["base"]]
    tag = "".join(f"-{o.split('=')[-1]}" for o in base)  # model=smollm2 trainer=gpu: -smollm2-gpu
    path = WORK / f"default-seed{seed}{tag}{'-smoke' if smoke else ''}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_arm(arm: str, seed: int, spec_path: Path, budget: float | None) -> dict:
    folder = WORK / f"{arm}-seed{seed}-{int(time.time())}"
    folder.mkdir(parents=True)
    out = folder / "trials.json"
    extra = [] if budget is None else [f"--budget={budget}"]
    python = sys.executable
    if arm == "ours":
        storage = f"sqlite:///{folder}/optuna.db"
        command = [python, "-m", "src.sweep", f"sweep={spec_path}", f"storage={storage}"]
        command += ["study_name=peers", "report=false"]
        command += [] if budget is None else [f"timeout={budget}"]
    else:
        script, *flags = SCRIPTS[arm]
        command = [python, str(ROOT / "bench" / script), f"--spec={spec_path}", f"--out={out}"]
        command += [*flags, *extra]
    t0 = time.time()
    with open(folder / "output.log", "w") as log:
        done = subprocess.run(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    if done.returncode != 0:
        raise SystemExit(f"arm {arm} seed {seed} failed ({done.returncode}): see {folder}")
    trials = ours_trials(storage) if arm == "ours" else json.loads(out.read_text())["trials"]
    run = {"arm": arm, "seed": seed, "t0": t0, "wall_s": wall, "trials": trials, "dir": f"{folder}"}
    (folder / "run.json").write_text(json.dumps(run, indent=1))  # for --summarise
    return run


def ours_trials(storage: str) -> list[dict]:
    """Our study's trials in the same record form the peers write."""
    import optuna

    study = optuna.load_study(study_name="peers", storage=storage)
    records = []
    for t in study.trials:
        if not t.state.is_finished():  # enqueued starts the budget left unrun
            continue
        a, steps = t.user_attrs, t.intermediate_values
        launched, startup = a.get("launched_at"), a.get("startup_s")
        records.append(
            {
                "number": t.number,
                "start": t.datetime_start.timestamp() if t.datetime_start else None,
                "launched": launched,
                "first_step": launched + startup if launched and startup else None,
                "end": t.datetime_complete.timestamp() if t.datetime_complete else None,
                "state": t.state.name,
                "reason": a.get("reason"),
                "value": t.value if t.state.name == "COMPLETE" else None,
                "last_reported": steps[max(steps)] if steps else None,
                "params": t.params,
                "peak_mb": (a.get("metrics") or {}).get("mem/peak_mb"),
            }
        )
    return records


def anytime(run: dict) -> list[tuple[float, float]]:
    """(seconds since the arm's command started, best val acc so far) at each improvement:
    complete trials only, in the order they ended."""
    done = sorted(
        (t["end"] - run["t0"], t["value"])
        for t in run["trials"]
        if t["state"] == "COMPLETE" and t["value"] is not None and t["end"]
    )
    curve, best = [], None
    for at, value in done:
        if best is None or value > best:
            best = value
            curve.append((round(at, 1), value))
    return curve


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    return next((at for at, value in curve if value >= target - 1e-9), None)


def fixed_costs(run: dict) -> dict:
    """Trial start -> end of its first optimizer step (ours: the driver's ask, so the budget
    check and the process start count; the trial process alone is given too)."""
    starts = [t["first_step"] - t["start"] for t in run["trials"] if t.get("first_step")]
    out = {"median_s": _median(starts), "max_s": max(starts) if starts else None, "n": len(starts)}
    if run["arm"] == "ours":
        child = [t["first_step"] - t["launched"] for t in run["trials"] if t.get("first_step")]
        out["process_median_s"] = _median(child)
    return out


def summarise(runs: list[dict]) -> dict:
    """Per seed: the time ours takes to reach each peer's final best, over the time the peer took
    (exactly, and within one validation row: val acc moves in steps of 1/rows, and the same
    configuration lands a row or two apart between implementations)."""
    per_seed = {}
    for run in runs:
        run["curve"] = anytime(run)
        run["fixed_cost"] = fixed_costs(run)
        per_seed.setdefault(run["seed"], {})[run["arm"]] = run
    row = 1 / VAL_ROWS
    ratios = {(peer, tol): [] for peer in ("hf", "processes") for tol in (0, 1)}
    for arms in per_seed.values():
        ours = arms.get("ours")
        for peer, rows in ratios:
            if ours is None or peer not in arms or not arms[peer]["curve"]:
                continue
            target_at, target = arms[peer]["curve"][-1]
            reached = time_to_reach(ours["curve"], target - rows * row)
            ratio = reached / target_at if reached is not None else None
            suffix = "" if rows == 0 else "_within_one_row"
            arms[peer]["ours_to_reach_s" + suffix], arms[peer]["ratio" + suffix] = reached, ratio
            ratios[peer, rows].append(ratio)
    return {
        "ratio_vs_hf": _median_ratio(ratios["hf", 0]),
        "ratio_vs_process_per_trial": _median_ratio(ratios["processes", 0]),
        "ratio_vs_hf_within_one_row": _median_ratio(ratios["hf", 1]),
        "ratio_vs_process_per_trial_within_one_row": _median_ratio(ratios["processes", 1]),
        "val_rows": VAL_ROWS,
        "ratios_per_seed": {
            f"{peer}{'_within_one_row' * rows}": v for (peer, rows), v in ratios.items()
        },
        "runs": runs,
    }


def _median_ratio(values: list) -> float | None:
    """None (not reached) counts as worse than any number."""
    if not values:
        return None
    ordered = sorted(values, key=lambda v: float("inf") if v is None else v)
    middle = ordered[(len(ordered) - 1) // 2 : len(ordered) // 2 + 1]
    if any(v is None for v in middle):
        return None
    return statistics.mean(middle)


def _median(values: list) -> float | None:
    return round(statistics.median(values), 2) if values else None


def describe(run: dict) -> str:
    states = [t["state"] for t in run["trials"]]
    best = max((t["value"] for t in run["trials"] if t["value"] is not None), default=None)
    return (
        f"{len(states)} trials ({states.count('COMPLETE')} complete, {states.count('PRUNED')} "
        f"pruned, {states.count('FAIL')} failed), best {best}, {run['wall_s']:.0f} s"
    )


def plot(runs: list[dict], path: Path, base: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"ours": "tab:blue", "hf": "tab:orange", "processes": "tab:green"}
    colors["hf_memory"] = "tab:red"
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in runs:
        curve = anytime(run)
        if not curve:
            continue
        xs = [at / 60 for at, _ in curve] + [run["wall_s"] / 60]
        ys = [v for _, v in curve] + [curve[-1][1]]
        style = ["-", "--", ":", "-."][run["seed"] % 4]
        label = f"{run['arm']} seed {run['seed']}"
        color = colors.get(run["arm"], "tab:gray")
        ax.step(xs, ys, where="post", color=color, linestyle=style, label=label)
    ax.set_xlabel("wall time since the arm's command started (min)")
    ax.set_ylabel("best val acc found (complete trials)")
    where = f"with {base}" if base else "on the embedded MiniLM, 2-core CPU"
    ax.set_title(f"Default sweep space {where}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(result: dict) -> str:
    lines = [
        "| arm | seed | trials (complete/pruned/failed) | best val acc | reached at | "
        "trial start → 1st step, median (max) | ours reaches it at (exactly / within 1 row) |",
        "|---|" * 1 + "---|" * 6,
    ]
    for run in result["runs"]:
        states = [t["state"] for t in run["trials"]]
        curve, fixed = run["curve"], run["fixed_cost"]
        best_at, best = curve[-1] if curve else (None, None)
        worst = fixed["max_s"] and round(fixed["max_s"], 2)
        reach = (
            f"{_seconds(run.get('ours_to_reach_s'))} / "
            f"{_seconds(run.get('ours_to_reach_s_within_one_row'))}"
            if "ratio" in run
            else ""
        )
        lines.append(
            f"| {run['arm']} | {run['seed']} | {len(states)} ({states.count('COMPLETE')}/"
            f"{states.count('PRUNED')}/{states.count('FAIL')}) | {best} | {best_at} s | "
            f"{fixed['median_s']} s ({worst} s) | {reach} |"
        )
    keys = [k for k in result if k.startswith("ratio_vs")]
    lines.append("\n" + ", ".join(f"{k} = {result[k]}" for k in keys))
    return "\n".join(lines)


def _seconds(value) -> str:
    return "not reached" if value is None else f"{value:.0f} s"


if __name__ == "__main__":
    main()
