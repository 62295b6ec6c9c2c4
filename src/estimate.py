"""python -m src.estimate [-m] [OVERRIDE ...] [--json]   (console script: ftsweep-estimate)

Peak memory and step time of a configuration before it runs; the code lives in
src/train/estimate/.
"""

from src.train.estimate.cli import entry

if __name__ == "__main__":
    entry()
