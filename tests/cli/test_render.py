"""Deterministic rendering of tables and validation reports."""

from __future__ import annotations

import json

from stowage.cli.render import report_text, table, when

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject"}]}, indent=2)
REPORT = {
    "ok": False,
    "durationMs": 42,
    "checks": [
        {"id": "bucket-name", "action": "", "status": "passed", "message": "Bucket name is valid.", "remedy": ""},
        {"id": "s3:PutObject", "action": "s3:PutObject", "status": "failed", "message": "Denied.", "remedy": POLICY},
        {"id": "region", "action": "", "status": "warning", "message": "Odd region.", "remedy": "Check it."},
        {"id": "ec2:CreateSnapshot", "action": "", "status": "skipped", "message": "Off.", "remedy": ""},
    ],
}


def test_table_aligns_columns_without_trailing_blanks() -> None:
    text = table(("A", "LONGER"), [["x", None], ["yyyy", True]])
    assert text.splitlines() == ["A     LONGER", "x     -", "yyyy  yes"]


def test_report_marks_each_status_and_prints_remedies_verbatim() -> None:
    text = report_text(REPORT)
    lines = text.splitlines()
    assert lines[1].startswith("✓  bucket-name")
    assert lines[2].startswith("✗  s3:PutObject")
    assert lines[3].startswith("!  region")
    assert lines[4].startswith("–  ec2:CreateSnapshot")
    assert "✗ How to fix s3:PutObject:\n" + POLICY in text
    assert "! Worth a look region:\nCheck it." in text
    assert lines[-1] == "Validation FAILED (1 passed, 1 failed, 1 warning, 1 skipped; 42 ms)."


def test_times_are_utc_to_the_second() -> None:
    assert when("2025-03-04T05:06:07.891011Z") == "2025-03-04 05:06:07Z"
    assert when("2025-03-04T06:06:07+01:00") == "2025-03-04 05:06:07Z"
    assert when(None) == "-"
