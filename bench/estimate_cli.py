"""How long `python -m src.estimate` takes, end to end, as a user's shell sees it: wall time of
the whole process (interpreter start, imports, composing and checking the config, the simulated
step, printing), median over REPEATS runs after one warm-up run per configuration (the warm-up
also times any matmul shapes this machine has not timed yet; they are cached in
paths.cache_dir). Two arms, alternated:

  program             python -m src.estimate ARGS --json (bitsandbytes kept out of the process)
  bitsandbytes loaded main() without that (as a process that trains afterwards would run it)

and, for scale, the floor of the imports themselves: `import torch` and `import torch,
transformers` with a model class. Bad input is timed too (named before torch is imported).
And `-m` (--multirun-only runs just this part): several configurations in one process against
the same configurations as one process each, alternated.
Results: bench/results/estimate_cli.json (--multirun-only updates its `multirun` part).

    .venv/bin/python bench/estimate_cli.py [--repeats 3] [--multirun-only]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # src, for the sweeps' combinations
RESULTS = ROOT / "bench" / "results" / "estimate_cli.json"
CONFIGS = [
    ("minilm qlora_r8", ["+experiment=qlora_r8"]),
    ("minilm full", ["+experiment=full"]),
    ("smollm2 lora_r16", ["+experiment=smollm2_lora_r16"]),
    ("smollm2 sft lora", ["+experiment=smollm2_sft_lora"]),
    ("tiny_bert lora", ["model=tiny_bert"]),
]
# Several configurations at once (python -m src.estimate -m): the experiments of each model.
MULTIRUNS = [
    ("minilm, 8 experiments", "+experiment=glob(*,exclude=smollm2*)"),
    ("smollm2, 6 experiments", "+experiment=glob(smollm2*)"),
]
BAD_INPUT = ("bad input (data.batch_size=-3)", ["model=tiny_bert", "data.batch_size=-3"])
ARMS = {
    "program": [sys.executable, "-m", "src.estimate"],
    "bitsandbytes loaded": [
        sys.executable,
        "-c",
        "from src.train.estimate.cli import main; main()",
    ],
}
FLOORS = {
    "import torch": "import torch",
    "import torch, transformers (+ a model class)": (
        "import torch, transformers; from transformers import BertModel"
    ),
}


def wall_s(command: list[str], expect_rc: int = 0) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != expect_rc:
        raise SystemExit(f"{command}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return took


def timed(commands: dict[str, list[str]], repeats: int, expect_rc: int = 0) -> dict[str, dict]:
    """Median and range per command, the commands alternating so drift hits each alike."""
    runs: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            runs[name].append(wall_s(command, expect_rc))
    return {
        name: {"median_s": statistics.median(r), "min_s": min(r), "max_s": max(r), "runs_s": r}
        for name, r in runs.items()
    }


def multirun_rows(repeats: int) -> list[dict]:
    """-m over each sweep in one process, against each of its configurations in a process of
    its own (their times summed), the two alternated; after a warm-up of the one process."""
    from src.train.estimate.multirun import combinations

    rows = []
    for name, sweep in MULTIRUNS:
        combos = combinations([sweep])
        one = [*ARMS["program"], "-m", sweep, "--json"]
        wall_s(one)  # warm-up: shapes this machine has not timed yet
        together, apart = [], []
        for _ in range(repeats):
            together.append(wall_s(one))
            apart.append(sum(wall_s([*ARMS["program"], *c, "--json"]) for c in combos))
        median = statistics.median(together)
        rows.append(
            {
                "sweep": name,
                "configurations": len(combos),
                "one_process_s": {"median_s": median, "runs_s": together},
                "one_process_each_s": {"median_s": statistics.median(apart), "runs_s": apart},
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--multirun-only", action="store_true")
    args = parser.parse_args()
    if args.multirun_only:
        result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        multirun = {"when": time.strftime("%Y-%m-%d %H:%M"), "repeats": args.repeats}
        result["multirun"] = {**multirun, "rows": multirun_rows(args.repeats)}
        RESULTS.write_text(json.dumps(result, indent=1) + "\n")
        return
    rows = []
    for name, overrides in CONFIGS:
        warm_up = wall_s([*ARMS["program"], *overrides, "--json"])
        arms = {arm: [*command, *overrides, "--json"] for arm, command in ARMS.items()}
        rows.append({"config": name, "warm_up_s": warm_up, **timed(arms, args.repeats)})
        print(json.dumps(rows[-1]), flush=True)
    name, overrides = BAD_INPUT
    bad = timed({name: [*ARMS["program"], *overrides]}, args.repeats, expect_rc=2)
    floors = timed({k: [sys.executable, "-c", v] for k, v in FLOORS.items()}, args.repeats)
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "repeats": args.repeats,
        "rows": rows,
        "bad_input": bad,
        "floors": floors,
        "multirun": {"repeats": args.repeats, "rows": multirun_rows(args.repeats)},
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"bad_input": bad, "floors": floors}, indent=1))


if __name__ == "__main__":
    main()
