"""sipedge.entropy: identifiers from the CSPRNG pool; the CDR's uuid is a version 7 UUID."""

from __future__ import annotations

import time
import uuid

import pytest

from sipedge.entropy import random_hex, time_ordered_uuid
from sipedge.store.records import CallRecord

NOW_MS = 1_790_000_000_000  # 2026


def test_time_ordered_uuids_are_version_7_in_canonical_form() -> None:
    values = [time_ordered_uuid(NOW_MS) for _ in range(3000)]  # several refills of the pool
    assert len(set(values)) == len(values)
    for value in values:
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # lower-case 8-4-4-4-12, as str(UUID) gives
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert parsed.int >> 80 == NOW_MS  # RFC 9562 5.7: unix_ts_ms, the top 48 bits


def test_time_ordered_uuids_sort_by_their_millisecond() -> None:
    values = [time_ordered_uuid(NOW_MS + step) for step in (0, 1, 255, 256, 65_535, 65_536)]
    assert sorted(values) == values  # as text too: what an index on a TEXT column compares
    assert time_ordered_uuid(0).startswith("00000000-0000-7")
    assert time_ordered_uuid((1 << 48) - 1).startswith("ffffffff-ffff-7")
    for bad in (-1, 1 << 48):
        with pytest.raises(ValueError):
            time_ordered_uuid(bad)


def test_every_random_digit_of_a_uuid_varies() -> None:
    values = [time_ordered_uuid(NOW_MS).replace("-", "") for _ in range(3000)]
    for position in range(12, 32):
        seen = {value[position] for value in values}
        if position == 12:
            assert seen == {"7"}  # the version
        elif position == 16:
            assert seen == set("89ab")  # the variant's 10, then two random bits
        else:
            assert len(seen) == 16, position


def test_random_hex_values_are_fresh_across_refills() -> None:
    values = [random_hex(4) for _ in range(5000)]  # 20,000 bytes: five refills
    assert all(len(value) == 8 for value in values)
    assert len(set(values)) > 4990  # 32 bits each: a repeat is a birthday accident at most


def test_a_call_record_has_a_fresh_uuid_of_now() -> None:
    first, second = (CallRecord(c, "1", "2", "127.0.0.1", None, 0.0) for c in "ab")
    assert first.uuid != second.uuid
    parsed = uuid.UUID(first.uuid)
    assert parsed.version == 7
    assert abs((parsed.int >> 80) / 1000 - time.time()) < 60
