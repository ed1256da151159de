"""The shipped alert rules: every rule has a ``promtool test rules`` unit test that passes
(skipped only where promtool is missing) and a runbook section in docs/operations.md; the
files in ``monitoring/`` are what the package renders; thresholds are flags, checked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from commandbus import ValidationError
from commandbus._registry import package_version
from commandbus.cli import main
from commandbus.monitoring import AlertSettings, alert_rules, dashboard, render_rules
from commandbus.monitoring._rules import recording_rules

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
UNIT_TESTS = MONITORING / "commandbus-alerts.test.yml"
PROMTOOL = shutil.which("promtool") or shutil.which("promtool", path="/usr/bin")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="skipped only where the promtool binary is missing (apt-get install prometheus)",
)


def _promtool(*args: str, cwd: Path) -> str:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_the_promtool_unit_tests_of_the_shipped_rules_pass(tmp_path: Path) -> None:
    """Run against the package's rendering (not only the file in the repository)."""
    (tmp_path / "commandbus-alerts.yml").write_text(render_rules(version=package_version()))
    shutil.copy(UNIT_TESTS, tmp_path)
    assert "SUCCESS: 9 rules found" in _promtool(
        "check", "rules", "commandbus-alerts.yml", cwd=tmp_path
    )
    assert "SUCCESS" in _promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)


@needs_promtool
def test_rules_made_with_other_thresholds_are_valid(tmp_path: Path) -> None:
    settings = AlertSettings(
        console_url="https://ops.example.com/commandbus/",
        runbook_url="https://wiki.example.com/commandbus/operations",
        group_by="",
        waiting_age="1h30m",
        failure_outcomes="failed,retried,parked,canceled",
        tsq_for="0s",
    )
    (tmp_path / "rules.yml").write_text(render_rules(settings))
    _promtool("check", "rules", "rules.yml", cwd=tmp_path)
    text = (tmp_path / "rules.yml").read_text()
    assert "(commandbus_oldest_ready_age_seconds) > 5400" in text
    assert 'outcome=~"failed|retried|parked|canceled"' in text
    assert "https://ops.example.com/commandbus/tsq?domain=" in text
    assert "https://wiki.example.com/commandbus/operations#commandbusnoliveworker" in text
    assert "by (job" not in text


def test_every_alert_has_a_unit_test_and_a_runbook_section() -> None:
    tested = set(re.findall(r"alertname: (\w+)", UNIT_TESTS.read_text()))
    recorded = set(re.findall(r"- expr: ([\w:]+)", UNIT_TESTS.read_text()))
    operations = (ROOT / "docs" / "operations.md").read_text()
    sections = set(re.findall(r"^#### (\w+)$", operations, re.MULTILINE))
    for rule in alert_rules():
        assert rule.alert in tested, f"{rule.alert} has no promtool unit test"
        assert rule.alert in sections, f"{rule.alert} has no runbook in docs/operations.md"
        assert rule.anchor == rule.alert.lower()  # GitHub's anchor of that heading
    for record, _expr in recording_rules():
        assert record in recorded, f"{record} has no promtool unit test"


def test_the_files_in_the_repository_are_the_packages_own() -> None:
    rendered = render_rules(version=package_version())
    assert (MONITORING / "commandbus-alerts.yml").read_text() == rendered, (
        "regenerate: commandbus monitoring rules -o monitoring/commandbus-alerts.yml"
    )
    assert (MONITORING / "grafana-dashboard.json").read_text() == dashboard()
    board = json.loads(dashboard())
    assert board["uid"] == "commandbus"
    assert all(target["expr"] for p in board["panels"] for target in p.get("targets", []))


def test_the_cli_prints_rules_with_the_flags_given(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["monitoring", "rules", "--waiting-age", "5m", "--tsq-growth", "3"]) == 0
    text = capsys.readouterr().out
    assert "# Made by: commandbus monitoring rules --tsq-growth 3 --waiting-age 5m" in text
    assert "(commandbus_oldest_ready_age_seconds) > 300" in text
    out = tmp_path / "board.json"
    assert main(["monitoring", "dashboard", "--output", str(out)]) == 0
    assert out.read_text() == dashboard()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--waiting-age", "5"], "--waiting-age: must be a Prometheus duration"),
        (["--waiting-for=-1m"], "--waiting-for: must be a Prometheus duration"),
        (["--tsq-window", "0s"], "--tsq-window: must be a Prometheus duration"),
        (["--retention", "300y"], "--retention: must be a Prometheus duration"),
        (["--console-url", "ftp://x"], "--console-url: must be an http(s) URL"),
        (["--console-url", 'http://x/"}}'], "--console-url: must be a URL without"),
        (["--failure-ratio", "1.5"], "--failure-ratio: must be between 0 and 1"),
        (["--failure-ratio", "nan"], "--failure-ratio: must be between 0 and 1"),
        (["--failure-outcomes", "completed"], "--failure-outcomes: must name some of"),
        (["--group-by", "job,domain"], "--group-by: 'domain' is kept anyway"),
        (["--group-by", "job,1x"], "--group-by: '1x' is not a label name"),
        (["--tsq-growth", "0"], "--tsq-growth"),
    ],
)
def test_bad_thresholds_are_refused_in_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["monitoring", "rules", *flags]) == 2
    error = capsys.readouterr().err
    assert error.startswith("commandbus: error: ") and message in error, error
    assert error.count("\n") == 1


def test_settings_in_code_are_checked_the_same_way() -> None:
    with pytest.raises(ValidationError) as caught:
        AlertSettings(retention="7 days")
    assert caught.value.field == "retention"
    with pytest.raises(ValidationError, match="group_by: must be a string"):
        AlertSettings(group_by=("job",))  # type: ignore[arg-type]
    assert AlertSettings(tsq_for="0s").seconds("tsq_for") == 0
    assert AlertSettings().changed() == {}
