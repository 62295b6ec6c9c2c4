"""The sweep's console: a progress bar (trials done/N, elapsed, ETA, best so far) and one line
per finished trial (state, value, its log file). Trial output itself goes to the trial's log file
unless verbose=true. With several workers each prints its lines, and no bar."""

from __future__ import annotations

import sys

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from src.sweep.samplers import pruned_by_note
from src.sweep.spec import SweepSpec
from src.sweep.storage import FINISHED, counted


class Progress:
    def __init__(self, spec: SweepSpec, study: optuna.Study, n_trials: int, bar: bool = True):
        self.spec, self.name, self.n = spec, study.study_name, n_trials
        self.bar = None
        if bar:
            self.bar = tqdm(
                total=n_trials,
                initial=min(counted(study), n_trials),
                unit="trial",
                desc=f"sweep {self.name}",
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{desc}: {n}/{total} trials |{bar}| {elapsed}<{remaining} {postfix}",
            )
            self.bar.set_postfix_str(f"best {self._best(study)}")

    def line(self, study: optuna.Study, trial) -> None:
        trials = study.get_trials(deepcopy=False)
        counts = {s: sum(t.state == s for t in trials) for s in FINISHED}
        log = trial.user_attrs.get("log_path")
        text = (
            f"[sweep {self.name}] trial {counted(study)}/{self.n} #{trial.number} "
            f"{trial.user_attrs.get('method', '')} {_state(trial)} {self._value(trial)} "
            f"({trial.user_attrs.get('wall_s', 0):.0f}s) | best {self._best(study)} | "
            f"complete {counts[TrialState.COMPLETE]} pruned {counts[TrialState.PRUNED]} "
            f"failed {counts[TrialState.FAIL]}" + (f" | log {log}" if log else "")
        )
        if self.bar is None:
            print(text, flush=True)
            return
        self.bar.write(text, file=sys.stdout)
        self.bar.n = min(counted(study), self.n)
        self.bar.set_postfix_str(f"best {self._best(study)}")  # also redraws

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _value(self, trial) -> str:
        if trial.values:
            return self._fmt(trial.values)
        metrics = trial.user_attrs.get("metrics") or {}
        if trial.state == TrialState.PRUNED and self.spec.metrics[0] in metrics:
            return f"{self.spec.metrics[0]}={metrics[self.spec.metrics[0]]:.4g} at the prune"
        return (trial.user_attrs.get("fail_reason") or "")[:100]

    def _fmt(self, values) -> str:
        return " ".join(f"{m}={v:.4g}" for m, v in zip(self.spec.metrics, values, strict=True))

    def _best(self, study: optuna.Study) -> str:
        if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            return "-"
        if len(self.spec.objectives) > 1:
            return f"pareto set of {len(study.best_trials)}"
        return f"#{study.best_trial.number} {self._fmt(study.best_trial.values)}"


def _state(trial) -> str:
    """COMPLETE, PRUNED@step, PRUNED(oom), FAIL(killed), ..."""
    reason = trial.user_attrs.get("reason")
    text = trial.state.name + (f"({reason})" if reason not in (None, "complete", "pruned") else "")
    step = trial.user_attrs.get("pruned_at_step")
    rule = pruned_by_note(trial.user_attrs.get("pruned_by"))
    return text + (f"@{step}{rule}" if step is not None else "")
