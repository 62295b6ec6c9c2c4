"""The tradeoff report: every trial (pruned ones at their last check, failed ones with their
reason), 95% intervals on accuracies, the Pareto front, a recommendation, one HTML page."""

from src.sweep.report.cli import entry, main
from src.sweep.report.table import trial_table
from src.sweep.report.write import write_report

__all__ = ["entry", "main", "trial_table", "write_report"]
