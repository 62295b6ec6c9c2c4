"""Paths a command line names (data files, a model folder), checked with a stat: they come with
the other bad input in well under a second, not after the ~20 s of imports that reading them
needs. A relative path is read from the folder the command runs in, so that folder is named."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

DATA_FILE_KEYS = ("train_file", "validation_file", "test_file")
# How a local folder is written; org/name may be a hub model name, a/b/c cannot be one.
PATH_PREFIXES = ("/", "./", "../", "~")


def input_path_problems(cfg: DictConfig) -> list[str]:
    return data_file_problems(cfg) + model_path_problems(cfg)


def data_file_problems(cfg: DictConfig) -> list[str]:
    files = {key: OmegaConf.select(cfg, f"data.{key}") for key in DATA_FILE_KEYS}
    return missing_file_problems({k: v for k, v in files.items() if isinstance(v, str)})


def model_path_problems(cfg: DictConfig) -> list[str]:
    """model=hf's name_or_path where it can only be a local folder."""
    source = OmegaConf.select(cfg, "model.source", default=None)
    if isinstance(source, DictConfig) and source.get("_target_", "").endswith(".hub_or_path"):
        name = OmegaConf.select(cfg, "model.name_or_path", throw_on_missing=False)
        if isinstance(name, str) and (name.startswith(PATH_PREFIXES) or name.count("/") > 1):
            return model_folder_problems(name)
    return []


def missing_file_problems(files: dict[str, str]) -> list[str]:
    """{data key: path} -> one problem per path that is not a file."""
    return [
        f"data.{key}: no such file '{path}'{_relative(path)}"
        for key, path in files.items()
        if not Path(path).is_file()
    ]


def model_folder_problems(name: str) -> list[str]:
    """A local model folder must hold the model's config.json (from_pretrained reads it first)."""
    folder = Path(name).expanduser()
    if not folder.is_dir():
        hub = "" if name.startswith(PATH_PREFIXES) else ", and not a hub model name (org/name)"
        return [f"model.name_or_path: no such folder '{name}'{_relative(name)}{hub}"]
    if not (folder / "config.json").is_file():
        return [f"model.name_or_path: the folder '{name}' holds no config.json{_relative(name)}"]
    return []


def _relative(path: str) -> str:
    return "" if Path(path).expanduser().is_absolute() else f" (relative to {Path.cwd()})"
