"""sipedge.entropy: the CSPRNG pool's UUIDs are version 4 UUIDs as `uuid.uuid4()` makes them."""

from __future__ import annotations

import uuid

from sipedge.entropy import random_hex, random_uuid
from sipedge.store.records import CallRecord


def test_random_uuids_are_version_4_in_canonical_form() -> None:
    values = [random_uuid() for _ in range(3000)]  # several refills of the pool
    assert len(set(values)) == len(values)
    for value in values:
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # lower-case 8-4-4-4-12, as str(uuid4()) gives
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_every_random_digit_of_a_uuid_varies() -> None:
    values = [random_uuid().replace("-", "") for _ in range(3000)]
    fixed = {12}  # the version digit; the variant digit (16) takes 8, 9, a and b
    for position in range(32):
        seen = {value[position] for value in values}
        if position in fixed:
            assert seen == {"4"}
        elif position == 16:
            assert seen == set("89ab")
        else:
            assert len(seen) == 16, position


def test_random_hex_values_are_fresh_across_refills() -> None:
    values = [random_hex(4) for _ in range(5000)]  # 20,000 bytes: five refills
    assert all(len(value) == 8 for value in values)
    assert len(set(values)) > 4990  # 32 bits each: a repeat is a birthday accident at most


def test_a_call_record_has_a_fresh_uuid() -> None:
    first, second = (CallRecord(c, "1", "2", "127.0.0.1", None, 0.0) for c in "ab")
    assert first.uuid != second.uuid and uuid.UUID(first.uuid).version == 4
