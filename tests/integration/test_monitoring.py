"""Monitoring as code (docs/monitoring.md): the role's Prometheus alert rules pass
`promtool check rules` and their own `promtool test rules` (tests/monitoring/), the Grafana
dashboard is well-formed, every metric either names is one the code exports (read from the
source for sipd and mediad, and scraped from a running sipd for sipd's), and sipd exports
the days its SIP TLS certificate has left."""

from __future__ import annotations

import ast
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port, gateway, self_signed_cert

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "ansible/roles/sipedge/files/monitoring"
RULES = MONITORING / "sipedge-alerts.yml"
DASHBOARD = MONITORING / "sipedge-dashboard.json"
RULE_TESTS = ROOT / "tests/monitoring/sipedge-alerts.test.yml"
PACKAGE = ROOT / "daemons/sipedge"
_METRIC = re.compile(r"\bsipedge_[a-z0-9_]+\b")
# what the exposition format adds to a family's name (counters, histograms)
_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not found: install Debian's prometheus package (.ci/setup does)")
    return found


def used_metrics() -> set[str]:
    """Every sipedge_* name in the rules' expressions and the dashboard's queries."""
    rules = yaml.safe_load(RULES.read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {m for e in exprs for m in _METRIC.findall(e)}


def family(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def exported_in_source() -> set[str]:
    """Metric family names the code can export: every "sipedge_..." string constant, and for
    a module that builds names as f"sipedge_...{name}", its prefix with each word-like string
    constant of that module (over-counts a little; a misspelt name still fails)."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        constants = {
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)
        }
        prefixes = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr) and len(node.values) >= 2:
                head, tail = node.values[0], node.values[1]
                if (
                    isinstance(head, ast.Constant)
                    and isinstance(head.value, str)
                    and head.value.startswith("sipedge_")
                    and isinstance(tail, ast.FormattedValue)
                ):
                    prefixes.add(head.value)
        names |= {c for c in constants if re.fullmatch(r"sipedge_[a-z0-9_]+", c)}
        words = {c for c in constants if re.fullmatch(r"[a-z][a-z0-9_]*", c)}
        names |= {p + w for p in prefixes for w in words}
    return names


def test_promtool_checks_the_rules() -> None:
    run = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_the_alerts_fire_where_they_should() -> None:
    run = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_is_labelled_and_explained() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    records = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    assert records == {"sipedge:carrier_asr:fleet", "sipedge:carrier_attempts:fleet"}
    names = {r["alert"] for r in alerts}
    for wanted in ("SipedgeGatewayAsrDrop", "SipedgeNoRegistrations", "SipedgeXdpFallback",
                   "SipedgeCdrQueueGrowing", "SipedgeSipTlsCertificateExpiring"):  # fmt: skip
        assert wanted in names
    for rule in alerts:
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_dashboard_is_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "sipedge-carriers" and dashboard["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance", "kind", "gateway", "window"} <= variables
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert _METRIC.search(target["expr"]), target


def test_every_metric_used_is_exported_by_the_code() -> None:
    used = used_metrics()
    assert {"sipedge_carrier_asr", "sipedge_media_fast_path"} <= used
    exported = exported_in_source()
    missing = sorted(m for m in used if family(m) not in exported)
    assert missing == [], f"rules/dashboard use metrics no code exports: {missing}"


def test_sipd_exports_the_metrics_and_its_certificate_days(
    sipd_factory: Any, tmp_path: Path
) -> None:
    cert, key = self_signed_cert(tmp_path, "sip")  # valid for one day
    listen = free_port(socket.SOCK_STREAM)
    sipd = sipd_factory(
        [gateway("gw1", free_port())],
        listen=[f"tls://127.0.0.1:{listen}"],
        sip={"tls_cert": str(cert), "tls_key": str(key)},
    )
    text = sipd.api("/metrics")
    families = {family(n) for n in re.findall(r"^# TYPE (\S+) ", text, re.M)}
    wanted = {family(m) for m in used_metrics() if not m.startswith("sipedge_media_")}
    assert sorted(wanted - families) == []
    days = sipd.metrics()[
        f'sipedge_sip_tls_cert_expiry_days{{listener="tls://127.0.0.1:{listen}"}}'
    ]
    assert 0.99 < days <= 1.0
