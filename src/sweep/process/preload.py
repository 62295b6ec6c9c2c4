"""Imported once by the trial fork server so every trial process starts with the stack loaded.

Besides the top-level imports, transformers and peft load model classes lazily on first use;
touching them here moves that cost out of every trial too.
"""

# ruff: noqa: E402 - the logger level must be set before bitsandbytes is imported

import gc
import os
import warnings

from src.train.quiet import quiet_libraries

quiet_libraries()  # before the imports below: bitsandbytes speaks at import time

import lightning.pytorch  # noqa: F401
import mlflow  # noqa: F401
import mlflow.store.tracking.rest_store  # noqa: F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
import optuna  # noqa: F401
import peft
import sqlalchemy.orm
import torch  # noqa: F401
import transformers
from lightning.pytorch.loggers import MLFlowLogger  # noqa: F401
from mlflow.utils.git_utils import get_git_commit

import src.sweep.configs
import src.sweep.process.child
import src.train.data
import src.train.run
import src.train.tracking

for _name in (
    "BertForSequenceClassification",
    "LlamaForSequenceClassification",
    "AutoModelForSequenceClassification",
    "AutoTokenizer",
    "BitsAndBytesConfig",
):
    getattr(transformers, _name)
for _name in (
    "LoraConfig",
    "PrefixTuningConfig",
    "PromptTuningConfig",
    "IA3Config",
    "get_peft_model",
):
    getattr(peft, _name)
# MLflow's store for a database or a server: importing it and mapping its tables cost each
# trial ~0.8 s. Modules only: a connection made here would be shared by every fork.
with warnings.catch_warnings():  # MLflow's own mappers use a deprecated loader: not ours to say
    warnings.simplefilter("ignore")
    sqlalchemy.orm.configure_mappers()
# MLflow tags each run with its source's git commit and imports GitPython on first use for it,
# and each run is tagged with the installed packages' versions: ~80 ms a trial, paid here once.
get_git_commit(os.getcwd())
src.train.tracking.package_versions()
# The default data, read and labelled once here: trials of the default sweep start with it.
src.train.data.labelled_source(src.sweep.configs.trial_config([]).data)

try:  # optional: quantized trials need it, others do not
    import bitsandbytes  # noqa: F401
except ImportError:
    pass

# Last: everything loaded above moves to the collector's permanent generation. Each trial would
# otherwise walk these millions of objects in its full collections (measured: 0.4 s each, more
# than one before the first step) and copy the pages they live on.
gc.freeze()
