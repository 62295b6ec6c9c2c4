"""python -m src.sweep [SETTING=VALUE ...] [OVERRIDE ...]; `--help` lists the settings."""

from src.sweep.cli import main

if __name__ == "__main__":
    main()
