"""Keep a run's console to what a user acts on: the progress bar, real warnings, the summary.

Silenced, because they say nothing to a user of this tool: Lightning's "GPU available" lines and
"Tip" banners, transformers' weight-loading bar and load report (a new classification head is
expected to be missing from the checkpoint), MLflow's store-creation messages and its per-run
links to a tracking server, bitsandbytes' warning that an optional `kernels` package is absent,
and deprecation notices the libraries emit about each other. Call before those libraries are
imported: some speak at import time.
"""

from __future__ import annotations

import logging
import os
import warnings

# Lightning and MLflow set their packages' loggers to INFO when imported (after this runs), so
# Lightning's speakers are quieted one level down, on loggers it never sets, and MLflow is told
# through the variable it reads at import.
QUIET_LOGGERS = {
    # GPU/TPU available, Tip banners, val_check notes, "fit stopped: max_steps reached"
    "lightning.pytorch.utilities.rank_zero": logging.WARNING,
    "lightning.fabric.utilities.rank_zero": logging.WARNING,
    "mlflow": logging.WARNING,  # "Creating initial MLflow database tables...", system metrics
    "bitsandbytes": logging.ERROR,  # the optional `kernels` package is missing (CPU)
    "transformers": logging.ERROR,  # load report of a newly initialised head
}


def quiet_libraries() -> None:
    # MLflow prints a "View run ..." link per run when it logs to a tracking server.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    # On a machine with SLURM, Lightning asks every run not started by srun to be: runs and
    # sweep trials here are started by this tool (its SLURM workers, docs/cluster.md).
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
