"""The sweep's console: one line per finished trial (k/N, state, value, best so far, counts)."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from src.sweep.spec import SweepSpec
from src.sweep.storage import FINISHED, counted


class Progress:
    """One sweep-level line per finished trial: k/N, state, value, best so far, state counts."""

    def __init__(self, spec: SweepSpec, study_name: str, n_trials: int):
        self.spec, self.name, self.n = spec, study_name, n_trials

    def line(self, study: optuna.Study, trial) -> None:
        trials = study.get_trials(deepcopy=False)
        counts = {s: sum(t.state == s for t in trials) for s in FINISHED}
        reason = trial.user_attrs.get("reason")
        state = (
            trial.state.name
            + (f"({reason})" if reason not in (None, "complete", "pruned") else "")
            + (
                f"@{trial.user_attrs['pruned_at_step']}"
                if trial.user_attrs.get("pruned_at_step") is not None
                else ""
            )
        )
        value = (
            self._fmt(trial.values)
            if trial.values
            else (trial.user_attrs.get("fail_reason") or "")[:100]
        )
        print(
            f"[sweep {self.name}] trial {counted(study)}/{self.n} #{trial.number} "
            f"{trial.user_attrs.get('method', '')} {state} {value} "
            f"({trial.user_attrs.get('wall_s', 0):.0f}s)"
            f" | best {self._best(study)} | complete {counts[TrialState.COMPLETE]} "
            f"pruned {counts[TrialState.PRUNED]} failed {counts[TrialState.FAIL]}",
            flush=True,
        )

    def _fmt(self, values) -> str:
        return " ".join(f"{m}={v:.4g}" for m, v in zip(self.spec.metrics, values, strict=True))

    def _best(self, study: optuna.Study) -> str:
        if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
            return "-"
        if len(self.spec.objectives) > 1:
            return f"pareto set of {len(study.best_trials)}"
        return f"#{study.best_trial.number} {self._fmt(study.best_trial.values)}"
