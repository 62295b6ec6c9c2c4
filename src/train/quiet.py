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

QUIET_LOGGERS = {
    "lightning.pytorch": logging.WARNING,  # GPU/TPU available, Tip banners, val_check notes
    "lightning.fabric": logging.WARNING,
    "mlflow": logging.WARNING,  # "Creating initial MLflow database tables..."
    "bitsandbytes": logging.ERROR,  # the optional `kernels` package is missing (CPU)
    "transformers": logging.ERROR,  # load report of a newly initialised head
}


def quiet_libraries() -> None:
    # MLflow prints a "View run ..." link per run when it logs to a tracking server.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
