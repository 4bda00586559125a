"""The chart's PrometheusRule, judged by Prometheus' own promtool: it loads, and each alert fires in time.

``promtool check rules`` parses every expression and template; ``promtool test
rules`` replays synthetic series through the rules on a fake clock and compares
the alerts that fire, labels and rendered annotations included.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.conftest import NAMESPACE, RELEASE, one, render

from .conftest import promtool_binary

ALERT_LABELS = {"team": "platform"}


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rule = one(render({"metrics": {"prometheusRule": {"enabled": True, "alertLabels": ALERT_LABELS}}}),
               "PrometheusRule")
    path = tmp_path_factory.mktemp("rules") / "mothership.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_binary(), *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_every_rule_and_template(rules_file: Path) -> None:
    checked = promtool("check", "rules", str(rules_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout


def phase(name: str, value: str) -> str:
    return f'mothership_loadtest_status_phase{{namespace="shop", name="{name}", phase="{value}"}}'


def _alert(name: str, labels: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    return {"exp_labels": {**labels, **ALERT_LABELS},
            "exp_annotations": {"summary": summary, "description": description}}


def test_each_alert_fires_when_it_should_and_not_before(rules_file: Path, tmp_path: Path) -> None:
    job = f"{RELEASE}-mothership-metrics"
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'up{{job="{job}", namespace="{NAMESPACE}"}}', "values": "1 1 0x20"},
                    {"series": 'mothership_reconcile_errors_total{controller="app"}', "values": "0x5 0+1x40"},
                    {"series": 'mothership_reconcile_errors_total{controller="tenant"}', "values": "0x45"},
                    {"series": phase("checkout", "Failed"), "values": "0 0 1x10"},
                    {"series": phase("checkout", "Running"), "values": "1 1 0x10"},
                    {"series": phase("cart", "Passed"), "values": "1x12"},
                ],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "MothershipLoadTestFailed", "exp_alerts": []},
                    {"eval_time": "3m", "alertname": "MothershipLoadTestFailed", "exp_alerts": [_alert(
                        "MothershipLoadTestFailed",
                        {"severity": "warning", "namespace": "shop", "name": "checkout", "phase": "Failed"},
                        "LoadTest shop/checkout ended Failed.",
                        "LoadTest shop/checkout is Failed: Failed means a threshold failed, Errored means it "
                        "could not run. See kubectl -n shop describe loadtest checkout.",
                    )]},
                    {"eval_time": "5m", "alertname": "MothershipOperatorDown", "exp_alerts": []},
                    {"eval_time": "8m", "alertname": "MothershipOperatorDown", "exp_alerts": [_alert(
                        "MothershipOperatorDown", {"severity": "critical"},
                        "The Mothership operator is down.",
                        f"No Mothership operator in namespace {NAMESPACE} has been scraped successfully "
                        f"for 5m. Tenants, Apps and LoadTests are not reconciled. Check `kubectl -n "
                        f"{NAMESPACE} get pods -l app.kubernetes.io/instance={RELEASE}`.",
                    )]},
                    {"eval_time": "15m", "alertname": "MothershipReconcileErrors", "exp_alerts": []},
                    {"eval_time": "30m", "alertname": "MothershipReconcileErrors", "exp_alerts": [_alert(
                        "MothershipReconcileErrors", {"severity": "warning", "controller": "app"},
                        "The app controller keeps failing to reconcile.",
                        "The app controller has reported reconcile errors (16.67m/s) for 15m. Check the "
                        "operator's logs and the affected objects' events.",
                    )]},
                ],
            }
        ],
    }
    path = tmp_path / "mothership.rules.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
    tested = promtool("test", "rules", str(path))
    assert tested.returncode == 0, tested.stdout + tested.stderr
