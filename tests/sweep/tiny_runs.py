"""The model and data slice the sweep tests' trials train on (tests/sweep is on sys.path:
pytest's default import mode): the tiny random-init BERT, 64 training rows, 32 validation rows,
64 test rows. Each test adds the batch, steps and validation points its assertions need."""

TINY_TRIALS = [
    "model=tiny_bert",
    "data.max_train_samples=64",
    "data.max_eval_samples=32",
    "data.test_size=64",
]
