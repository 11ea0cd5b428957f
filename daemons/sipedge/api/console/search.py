"""The console's CDR search: its query parameters checked and bounded, and the CSV layout.

Owns: `parse_search` (a query string's parameters to a `Search` or the list of what is wrong
with them), `CSV_COLUMNS` and `csv_row` (one CDR as a CSV row; `sipedge cdr export` writes the
same layout).
Must not: do I/O, read the clock, or know the storage backend (it builds the
`sipedge.store.CdrFilters` mapping, which the store turns into SQL with bound arguments).

Every parameter is hostile input: the query string is at most `MAX_QUERY` bytes, each value
`MAX_VALUE` characters of a small alphabet, times are ISO 8601 (UTC when no offset is given) or
epoch seconds, `limit` is one of `LIMITS`; unknown parameters are ignored.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

MAX_QUERY = 2048
MAX_VALUE = 64
LIMITS = (20, 50, 100, 500, 1000)
DEFAULT_LIMIT = 50
CSV_MAX_ROWS = 10_000  # the console's export; billing exports use `sipedge cdr export`
_NUMBER = re.compile(r"^[A-Za-z0-9+*#@._:\-]{1,64}$")  # caller, callee, gateway name
_CALL_ID = re.compile(r"^[\x21-\x7e]{1,256}$")  # SIP word characters, no space or control
_WHOLE = re.compile(r"^[0-9]{1,18}$")
_EPOCH = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,6})?$")

CSV_COLUMNS = (
    "id", "call_id", "caller", "callee", "source", "mapping_gateway", "setup_time",
    "answer_time", "end_time", "duration", "release_side", "cause", "final_status",
    "routing_gateway", "switch_stop_reason", "attempts",
)  # fmt: skip


def csv_row(record: Mapping[str, Any]) -> list[Any]:
    """One CDR in `CSV_COLUMNS` order; its attempts as compact JSON in the last column."""
    row: list[Any] = [record.get(c) for c in CSV_COLUMNS[:-1]]
    return [*row, json.dumps(record.get("attempts", []), separators=(",", ":"))]


@dataclass(frozen=True)
class Search:
    """A checked search: `form` echoes the accepted values (for the form and the links)."""

    limit: int = DEFAULT_LIMIT
    before: int | None = None
    call_id: str | None = None
    filters: dict[str, str | float | bool] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)

    def query(self, **changes: str | int) -> str:
        """The query string of this search, with `changes` (the next page, the CSV link)."""
        params: dict[str, str | int] = {k: v for k, v in self.form.items() if v}
        params.update(changes)
        return urlencode(params)


def _time(text: str) -> float | None:
    if _EPOCH.match(text):
        return float(text)
    if len(text) > 32:
        return None
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def parse_search(query: Mapping[str, str], raw_length: int) -> Search | list[str]:
    """The search of a query string, or what is wrong with it (one line per problem)."""
    if raw_length > MAX_QUERY:
        return [f"the query is longer than {MAX_QUERY} bytes"]
    errors: list[str] = []
    form: dict[str, str] = {}
    filters: dict[str, str | float | bool] = {}
    for key in ("caller", "callee", "gateway"):
        value = query.get(key, "").strip()
        if not value:
            continue
        if _NUMBER.match(value):
            filters[key] = form[key] = value
        else:
            errors.append(f"{key}: up to {MAX_VALUE} of A-Z a-z 0-9 + * # @ . _ : -")
    for key in ("since", "until"):
        value = query.get(key, "").strip()
        if not value:
            continue
        when = _time(value)
        if when is None:
            errors.append(f"{key}: an ISO 8601 date/time (UTC unless it says) or epoch seconds")
        else:
            filters[key], form[key] = when, value
    answered = query.get("answered", "")
    if answered in ("yes", "no"):
        filters["answered"], form["answered"] = answered == "yes", answered
    elif answered not in ("", "any"):
        errors.append("answered: any, yes or no")
    call_id = query.get("call_id", "").strip() or None
    if call_id is not None:
        if _CALL_ID.match(call_id):
            form["call_id"] = call_id
        else:
            errors.append("call_id: up to 256 visible characters")
    limit_text = query.get("limit", str(DEFAULT_LIMIT))
    limit = int(limit_text) if _WHOLE.match(limit_text) else 0
    if limit not in LIMITS:
        errors.append(f"limit: one of {', '.join(map(str, LIMITS))}")
    else:
        form["limit"] = str(limit)
    before = None
    if query.get("before"):
        before = int(query["before"]) if _WHOLE.match(query["before"]) else 0
        if before < 1:
            errors.append("before: the id of a CDR")
    if errors:
        return errors
    return Search(limit, before, call_id, filters, form)
