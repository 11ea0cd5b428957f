"""The quick fuzz run of `make test`: grammar-built datagrams into the parser and into a whole
in-process sipd stack (tests/fuzz/harness.py). Derandomized, so a run is reproducible; the
long run is `make fuzz` (tests/fuzz/long_run.py)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipedge.sip.message import ParseError, Request, make_response, parse_message
from tests.fuzz.grammar import SOURCES, messages, mutants
from tests.fuzz.harness import Stack

QUICK = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@QUICK
@given(messages(), st.integers(0, 2**32))
def test_parser_never_raises_anything_but_parse_error(data: bytes, seed: int) -> None:
    for d in [data, *mutants(data, seed, 4)]:
        try:
            msg = parse_message(d)
        except ParseError as err:
            if err.request is not None and err.reason.startswith(("Missing", "Bad CSeq")):
                continue
            if err.request is not None and err.status != 505:
                parse_message(make_response(err.request, err.status, err.reason).to_bytes())
            continue
        again = parse_message(msg.to_bytes())  # what we parsed, we write back parseably
        assert type(again) is type(msg)
        if isinstance(msg, Request):
            assert isinstance(again, Request) and again.method == msg.method


_STACK: list[Stack] = []


@settings(QUICK, max_examples=150)
@given(
    st.lists(st.tuples(messages(), st.sampled_from(SOURCES)), min_size=1, max_size=4),
    st.integers(0, 2**32),
)
def test_whole_stack_keeps_its_invariants(
    datagrams: list[tuple[bytes, tuple[str, int]]], seed: int
) -> None:
    """About 3,000 datagrams: the examples, their retransmissions and 10 mutants of each."""
    if not _STACK:
        _STACK.append(Stack())
    stack = _STACK[0]
    for data, source in datagrams:
        stack.feed(data, source)
        stack.feed(data, source)  # a retransmission
        for mutant in mutants(data, seed, 10):
            stack.feed(mutant, source)
    stack.settle()
