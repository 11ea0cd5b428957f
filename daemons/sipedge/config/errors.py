"""How a refused config is reported: `ConfigProblem`, `ConfigError` and their helpers.

Owns: `ConfigProblem` (one thing wrong: path, value found, what is allowed) and its wording,
`ConfigError` (every problem of one config), `Described`/`MISSING` (stand-ins for values that
are not shown verbatim), and `_Bad`, the exception a value parser raises for the collector to
turn into a problem.

Must not: import anything from sipedge (not even the rest of config/), read files, or know the
config's schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Described:
    """A stand-in for a value that should not (or cannot) be shown verbatim in a message:
    a missing value, an unknown key, a secret, a file that failed to parse."""

    text: str

    def __str__(self) -> str:
        return self.text


MISSING = Described("a missing value")


def _show(value: object) -> str:
    if isinstance(value, Described):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config: where, what was found, what is allowed there."""

    path: str
    value: object
    allowed: str

    def __str__(self) -> str:
        if not self.path:  # the file as a whole (unreadable, not YAML, not a mapping)
            return f"{_show(self.value)} (expected: {self.allowed})"
        return f"{self.path}: {_show(self.value)} is not allowed (allowed: {self.allowed})"


class ConfigError(Exception):
    """A config was refused; `problems` lists every reason, `str()` one per line."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class _Bad(Exception):
    """Raised by a value parser; the collector turns it into a ConfigProblem."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed
