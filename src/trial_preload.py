"""Imported once by the trial fork server so every trial process starts with the stack loaded.

Besides the top-level imports, transformers and peft load model classes lazily on first use;
touching them here moves that cost out of every trial too.
"""

import lightning.pytorch  # noqa: F401
import mlflow  # noqa: F401
import optuna  # noqa: F401
import peft  # noqa: F401
import torch  # noqa: F401
import transformers  # noqa: F401
from lightning.pytorch.loggers import MLFlowLogger  # noqa: F401

import src.config  # noqa: F401
import src.train  # noqa: F401
import src.trial_callback  # noqa: F401
import src.sweep_spec  # noqa: F401

for _name in ("BertForSequenceClassification", "LlamaForSequenceClassification",
              "AutoModelForSequenceClassification", "AutoTokenizer", "BitsAndBytesConfig"):
    getattr(transformers, _name)
for _name in ("LoraConfig", "PrefixTuningConfig", "PromptTuningConfig", "IA3Config", "get_peft_model"):
    getattr(peft, _name)
try:  # optional: quantized trials need it, others do not
    import logging

    # Its CPU backend warns at import that an optional kernels package is missing: noise per sweep.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    import bitsandbytes  # noqa: F401
except ImportError:
    pass
