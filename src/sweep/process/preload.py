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
import mlflow.store.tracking.sqlalchemy_workspace_store  # noqa: F401
import mlflow.system_metrics.system_metrics_monitor  # noqa: F401
import mlflow.tracing.processor.base_mlflow  # noqa: F401 - imported by set_tracking_uri
import optuna  # noqa: F401
import optuna.storages._rdb.models  # noqa: F401 - imported lazily by RDBStorage
import sqlalchemy.dialects.postgresql  # noqa: F401 - the storage URL's dialect, found lazily
import sqlalchemy.dialects.sqlite  # noqa: F401
import sqlalchemy.orm
import torch
import transformers
from lightning.pytorch.loggers import MLFlowLogger  # noqa: F401
from mlflow.utils.git_utils import get_git_commit
from transformers.conversion_mapping import get_checkpoint_conversion_mapping

import src.sweep.configs
import src.sweep.process.child
import src.sweep.process.schema_heads
import src.sweep.storage  # noqa: F401
import src.train.data
import src.train.models
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

src.sweep.process.schema_heads.cache_schema_heads()
# MLflow's store for a database or a server: importing it and mapping its tables cost each
# trial ~0.8 s. Modules only: a connection made here would be shared by every fork.
with warnings.catch_warnings():  # MLflow's own mappers use a deprecated loader: not ours to say
    warnings.simplefilter("ignore")
    sqlalchemy.orm.configure_mappers()
# MLflow tags each run with its source's git commit and imports GitPython on first use for it,
# and each run is tagged with the installed packages' versions: ~80 ms a trial, paid here once.
get_git_commit(os.getcwd())
src.train.tracking.package_versions()
# transformers builds its table of checkpoint key renamings (~100 compiled patterns) at the first
# model load of a process: ~70 ms a trial.
get_checkpoint_conversion_mapping("bert")
# The default data and tokenizer, read once here: trials of the default sweep start with them.
_default = src.sweep.configs.trial_config([])
src.train.data.labelled_source(_default.data)
src.train.models.load_tokenizer(
    src.train.models.resolve_tokenizer_path(
        _default.model, src.train.models.resolve_source(_default.model)
    )
)

# peft and bitsandbytes only with a CPU build of torch: with a CUDA build, importing bitsandbytes
# (peft imports it) reads the GPU's properties, which initializes CUDA in this server, and every
# process forked from it then fails at its first CUDA call ("Cannot re-initialize CUDA in forked
# subprocess"; seen on an H200). Each GPU trial imports them itself (src/train/adapters.py).
# What makes that import slow is not: bitsandbytes' torch.compile wrappers import inductor and
# dynamo, which query no GPU (checked on an H200: CUDA still uninitialized after importing them,
# which took 6.4 s there, and bitsandbytes then imported in 0.1 s), so the server imports them.
import torch._dynamo  # noqa: F401
import torch._inductor.compile_fx  # noqa: F401

if torch.version.cuda is None:
    import peft

    for _name in (
        "LoraConfig",
        "PrefixTuningConfig",
        "PromptTuningConfig",
        "IA3Config",
        "get_peft_model",
    ):
        getattr(peft, _name)
    try:  # optional: quantized trials need it, others do not
        import bitsandbytes  # noqa: F401
    except ImportError:
        pass

# Last: everything loaded above moves to the collector's permanent generation. Each trial would
# otherwise walk these millions of objects in its full collections (measured: 0.4 s each, more
# than one before the first step) and copy the pages they live on.
gc.freeze()
