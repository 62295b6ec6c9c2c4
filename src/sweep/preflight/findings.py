"""Problems found per method choice, merged so one found under every choice is said once."""

from __future__ import annotations


class Findings:
    """Problems per method choice, merged: one found under every choice is said once."""

    def __init__(self, method: str | None, choices: list):
        self.method, self.choices = method, choices
        self.found: dict[tuple[str | None, str], list] = {}

    def add(self, where: str | None, choice, problems: list[str]) -> None:
        for problem in problems:
            seen = self.found.setdefault((where, problem), [])
            if choice not in seen:
                seen.append(choice)

    def render(self) -> list[str]:
        out = []
        for (where, problem), choices in self.found.items():
            everywhere = self.method is None or set(choices) == set(self.choices)
            if where is None and (self.method is None or (everywhere and len(self.choices) > 1)):
                out.append(f"base: {problem}")
            elif where is None:
                out += [f"space.{self.method}.choices.{c}: {problem}" for c in choices]
            elif everywhere:
                out.append(f"{where}: {problem}")
            elif len(choices) == 1:
                out.append(f"{where} (when {self.method}={choices[0]}): {problem}")
            else:
                listed = ", ".join(map(str, choices))
                out.append(f"{where} (when {self.method} in [{listed}]): {problem}")
        return out


def unique(items: list) -> list:
    return list(dict.fromkeys(items))
