"""python -m src.report study_name=S [storage=URL] [out=DIR]   (console script: ftsweep-report)

The tradeoff report of a stored sweep, again and from any machine that reaches its storage;
the same as `python -m src.sweep report ...`. The code lives in src/sweep/report.py.
"""

from src.sweep.report import main

if __name__ == "__main__":
    main()
