"""ftsweep: measured sweeps over LLM fine-tuning methods."""
