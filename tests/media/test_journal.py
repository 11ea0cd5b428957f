"""mediad's session journal: replay, torn lines, compaction, O(1) appends, unsafe paths."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from sipedge.appliance.privileges import PrivilegeError, private_dir
from sipedge.media import journal
from sipedge.media.journal import COMPACT_MIN, MAX_LINE, Journal, JournalError

OWNERS = {0, os.geteuid()}


def session(call_id: str, port: int = 20000) -> dict[str, Any]:
    leg = {"tag": "t", "port": port, "mode": 0, "key": "", "sdp": ["10.0.0.1", 4000]}
    return {"call_id": call_id, "a": leg, "b": {**leg, "port": port + 2}, "created": 1.0}


def test_replay(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = Journal(path, OWNERS)
    assert j.open().sessions == {}
    j.put(session("a"))
    j.put(session("b"))
    j.put({**session("a"), "answered": True})
    j.delete("b")
    j.totals({"expired": 3})
    j.close()
    got = Journal(path, OWNERS).open()
    assert list(got.sessions) == ["a"] and got.sessions["a"]["answered"] is True
    assert got.totals == {"expired": 3} and got.skipped == 0 and not got.torn
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_newer_format_is_refused_and_the_current_one_read(tmp_path: Path) -> None:
    path = tmp_path / "j"
    put = {"op": "put", "s": session("a")}
    for version, refused in ((journal.VERSION, False), (journal.VERSION + 1, True)):
        path.write_text(
            json.dumps({"op": "journal", "version": version}) + "\n" + json.dumps(put) + "\n"
        )
        os.chmod(path, 0o600)
        if refused:
            with pytest.raises(JournalError, match=f"journal format {version} is newer"):
                Journal(path, OWNERS).open()
            with pytest.raises(JournalError, match="newer"):
                journal.read(path, OWNERS)
            assert "a" in path.read_text()  # refused, not rewritten
        else:
            assert list(Journal(path, OWNERS).open().sessions) == ["a"]


def test_torn_last_line_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = Journal(path, OWNERS)
    j.open()
    j.put(session("a"))
    j.close()
    whole = path.read_bytes()
    with path.open("ab") as f:
        f.write(b'{"op":"put","s":{"call_id":"b"')  # crash mid-write
    assert journal.read(path, OWNERS).torn  # read-only replay leaves the file alone
    j = Journal(path, OWNERS)
    got = j.open()
    assert got.torn and list(got.sessions) == ["a"]
    assert path.read_bytes() == whole  # cut back to the last whole line
    j.put(session("c"))  # appends start on a line of their own
    j.close()
    assert list(Journal(path, OWNERS).open().sessions) == ["a", "c"]


def test_bad_and_oversize_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j"
    big = b'{"op":"put","s":{"call_id":"x","pad":"' + b"y" * (MAX_LINE + 10) + b'"}}\n'
    lines = [
        b'{"op":"put","s":' + json.dumps(session("a")).encode() + b"}\n",
        b"not json\n",
        big,
        b'{"op":"frobnicate"}\n',
        b'{"op":"del","id":7}\n',
    ]
    path.write_bytes(b"".join(lines))
    os.chmod(path, 0o600)
    got = Journal(path, OWNERS).open()
    assert list(got.sessions) == ["a"] and got.skipped == 4 and not got.torn


def test_compaction_keeps_the_file_bounded(tmp_path: Path) -> None:
    path = tmp_path / "j"
    j = Journal(path, OWNERS)
    j.open()
    live: dict[str, dict[str, Any]] = {}
    sizes = []
    for n in range(20000):
        call_id = f"call-{n}"
        s = session(call_id)
        j.put(s)
        live[call_id] = s
        if len(live) > 10:
            old = next(iter(live))
            del live[old]
            j.delete(old)
        if j.needs_compaction(len(live)):
            j.compact(live.values(), {"expired": n})
            assert j.ops == 0
        sizes.append(path.stat().st_size)
    line = 300  # a put line is under 300 bytes
    assert max(sizes) < (COMPACT_MIN + 2 * 10 + 20) * line
    j.close()
    got = Journal(path, OWNERS).open()
    assert got.sessions == live
    assert not list(tmp_path.glob(".j.tmp"))


def test_append_is_o1_per_operation(tmp_path: Path) -> None:
    """The bytes written per offer/latch/delete do not grow with the number of live calls
    (amortised over compactions, which cost O(live) once per max(1024, 2 x live) lines)."""

    def cost(live_count: int) -> float:
        path = tmp_path / f"j-{live_count}"
        j = Journal(path, OWNERS)
        j.open()
        live = {f"live-{i}": session(f"live-{i}") for i in range(live_count)}
        for s in live.values():
            j.put(s)
        j.compact(live.values(), {})
        start = j.bytes_written
        ops = 6000
        for n in range(ops // 3):  # offer, latch (put again), delete
            s = session(f"c-{n}")
            j.put(s)
            j.put(s)
            j.delete(s["call_id"])
            if j.needs_compaction(len(live) + 1):
                j.compact(live.values(), {})
        j.close()
        return (j.bytes_written - start) / ops

    small, large = cost(10), cost(2000)
    assert small < 300
    assert large < 3 * small, (small, large)


def test_symlink_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    link = tmp_path / "j"
    link.symlink_to(target)
    with pytest.raises(JournalError):
        Journal(link, OWNERS).open()
    with pytest.raises(JournalError):
        journal.read(link, OWNERS)


def test_hard_link_and_foreign_owner_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    os.link(target, tmp_path / "j")
    with pytest.raises(JournalError, match="links"):
        Journal(tmp_path / "j", OWNERS).open()
    other = tmp_path / "k"
    other.write_text("")
    with pytest.raises(JournalError, match="owned"):
        Journal(other, {12345}).open()


def test_loose_mode_tightened(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_text("")
    os.chmod(path, 0o644)
    Journal(path, OWNERS).open()
    assert path.stat().st_mode & 0o777 == 0o600


def test_private_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    private_dir(state, OWNERS)
    assert state.stat().st_mode & 0o777 == 0o700
    os.chmod(state, 0o770)
    with pytest.raises(PrivilegeError, match="writable"):
        private_dir(state, OWNERS)
    os.chmod(state, 0o700)
    with pytest.raises(PrivilegeError, match="owned"):
        private_dir(state, {12345})
    (tmp_path / "link").symlink_to(state)
    with pytest.raises(PrivilegeError, match="symlink"):
        private_dir(tmp_path / "link", OWNERS)
