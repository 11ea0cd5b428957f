"""sipd's hot modules run compiled (setup.py: mypyc), as the wheel ships them, unless the venv
was built with SIPEDGE_PURE=1; and sipd can tell which it runs."""

from __future__ import annotations

import ast
import importlib
import os
import types

import pytest

from sipedge.sipd.daemon import compiled
from tests.conftest import REPO


def compiled_names() -> list[str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED":
            names = ast.literal_eval(node.value)
            assert isinstance(names, tuple)
            return list(names)
    raise AssertionError("setup.py has no COMPILED")


def test_the_hot_modules_are_compiled() -> None:
    if os.environ.get("SIPEDGE_PURE") == "1":
        pytest.skip("SIPEDGE_PURE=1: the venv was built without mypyc")
    names = compiled_names()
    assert {"sip/message", "sip/transaction", "calls/service"} <= set(names)
    assert "calls/call" in names  # its helpers let go of it at its end (no weak reference)
    # see setup.py's docstring: its functions are replaced by tests
    assert "sip/transport/intake" not in names
    for name in names:
        module = importlib.import_module("sipedge." + name.replace("/", "."))
        assert compiled(module), f"sipedge.{name} runs as {module.__file__}"


def test_compiled_tells_a_c_extension_from_python() -> None:
    assert compiled(types.SimpleNamespace(__file__="/x/message.cpython-311-x86_64-linux-gnu.so"))
    assert not compiled(types.SimpleNamespace(__file__="/x/message.py"))
    assert not compiled(types.SimpleNamespace())
    assert not compiled(importlib.import_module("sipedge.sip.transport.intake"))
