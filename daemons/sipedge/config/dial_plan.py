"""A routing gateway's `caller_dial_plan` (docs/configuration.md): its rules, checked.

Owns: `dial_plan`, which builds the rules of one gateway with the collector.
Must not: read files, or import anything from sipedge outside config/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from sipedge.config.schema import DialPlanRule
from sipedge.config.values import REGEX_ALLOWED, REPLACE_ALLOWED, _string

T = TypeVar("T")


class _Collector(Protocol):
    """What the rules need of `config.collector._Collector` (which calls this module)."""

    def problem(self, path: str, value: object, allowed: str) -> None: ...

    def sequence(self, path: str, raw: object, what: str = "a list") -> list[object]: ...

    def mapping(
        self, path: str, raw: object, keys: Iterable[str], *, what: str = ...
    ) -> dict[str, object]: ...

    def get(
        self,
        path: str,
        data: dict[str, object],
        key: str,
        parse: Callable[[object], T],
        default: T,
        *,
        required: bool = ...,
        allowed: str = ...,
    ) -> T: ...


def dial_plan(c: _Collector, path: str, data: dict[str, object]) -> tuple[DialPlanRule, ...]:
    """A routing gateway's `caller_dial_plan`: {match, replace} rules, each regular expression
    and its template checked here (a bad one is a problem at its path, not a crash later)."""
    rules: list[DialPlanRule] = []
    raw = data.get("caller_dial_plan")
    for j, item in enumerate(c.sequence(path, raw, "a list of {match, replace} rules")):
        rpath = f"{path}[{j}]"
        rule = c.mapping(rpath, item, ("match", "replace"), what="{match: ..., replace: ...}")
        if not isinstance(item, dict):
            continue
        match = c.get(
            rpath,
            rule,
            "match",
            _string(REGEX_ALLOWED),
            None,
            required=True,
            allowed=REGEX_ALLOWED,
        )
        replace = c.get(
            rpath,
            rule,
            "replace",
            _string(REPLACE_ALLOWED),
            None,
            required=True,
            allowed=REPLACE_ALLOWED,
        )
        if match is None:
            continue
        try:
            pattern = re.compile(match)
        except re.error as err:
            c.problem(f"{rpath}.match", match, f"a valid regular expression ({err})")
            continue
        if replace is None:
            continue
        try:
            pattern.sub(replace, "")  # parses the template: bad group references fail here
        except (re.error, IndexError) as err:
            c.problem(f"{rpath}.replace", replace, f"a replacement valid for the match ({err})")
            continue
        rules.append(DialPlanRule(pattern, replace))
    return tuple(rules)
