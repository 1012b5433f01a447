"""``stowage backups sync|verify`` and the web UI's Sync from bucket and Verify buttons, against a real server and
ministack (``AUTH=true``) with a real STS location; backups are written into the bucket by its owner."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from typer.testing import CliRunner, Result

from stowage.cli.main import app
from tests.backup_sync.helpers import Live, add_manifest, live_stack, write_velero_backup
from tests.support.aws_accounts import AwsAccounts
from tests.support.servers import StowageServer
from tests.web.support import WebClient, web_env


def _cli(live: Live, *args: str) -> Result:
    env = {"STOWAGE_SERVER": live.server.url, "STOWAGE_TOKEN": live.server.admin_token}
    return CliRunner().invoke(app, list(args), env=env)


def _rows(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


def test_cli_sync_then_verify_with_exit_codes(aws: AwsAccounts, server_factory: Callable[..., StowageServer]) -> None:
    live = live_stack(aws, server_factory)
    cluster = live.cluster["name"]
    write_velero_backup(live, "from-velero")
    write_velero_backup(live, "from-stowage")
    objects = add_manifest(live, "from-stowage")
    write_velero_backup(live, "half-done", finished=False)

    synced = _cli(live, "backups", "sync", cluster)
    assert synced.exit_code == 0, synced.output
    table, skipped, summary = synced.stdout.strip().split("\n\n")
    rows = _rows(table)
    assert rows[0] == ["IMPORTED", "ORIGIN", "PHASE", "CREATED", "EXPIRES", "LOCATION"]
    assert sorted((r[0], r[1], r[2], r[5]) for r in rows[1:]) == [
        ("from-stowage", "sync", "Completed", "primary"),
        ("from-velero", "velero", "Completed", "primary"),
    ]
    assert skipped.startswith("Skipped half-done (location primary): unfinished: no velero-backup.json")
    assert summary == "Imported 2, skipped 1, already known 0."
    again = json.loads(_cli(live, "backups", "sync", cluster, "-o", "json").stdout)
    assert again["imported"] == [] and again["known"] == 2 and [s["name"] for s in again["skipped"]] == ["half-done"]

    intact = _cli(live, "backups", "verify", cluster, "from-stowage")
    assert intact.exit_code == 0, intact.output
    assert intact.stdout.strip() == (
        f"Backup from-stowage is intact: {objects} objects match their SHA-256 and size in the manifest."
    )
    as_json = json.loads(_cli(live, "backups", "verify", cluster, "from-stowage", "--output", "json").stdout)
    assert as_json == {"ok": True, "checkedObjects": objects, "problems": []}

    s3 = live.owner_s3()
    folder = f"{live.cluster_prefix}/backups/from-stowage"
    s3.put_object(Bucket=live.bucket, Key=f"{folder}/from-stowage.tar.gz", Body=b"overwritten")
    s3.delete_object(Bucket=live.bucket, Key=f"{folder}/from-stowage-logs.gz")
    broken = _cli(live, "backups", "verify", cluster, "from-stowage")
    assert broken.exit_code == 1, broken.output
    rows = _rows(broken.stdout.split("\n\n")[0])
    assert rows[0] == ["OBJECT", "PROBLEM", "EXPECTED SIZE", "ACTUAL SIZE", "EXPECTED SHA-256", "ACTUAL SHA-256"]
    found = {r[0]: r for r in rows[1:]}
    assert found["from-stowage-logs.gz"][1:4] == ["missing", found["from-stowage-logs.gz"][2], "-"]
    assert found["from-stowage.tar.gz"][1] == "size mismatch" and found["from-stowage.tar.gz"][3] == "11"
    assert "- from-stowage-logs.gz is in the manifest but not in the bucket" in broken.stdout
    assert "failed verification: 2 problem(s)" in broken.stderr
    broken_json = _cli(live, "backups", "verify", cluster, "from-stowage", "-o", "json")
    assert broken_json.exit_code == 1
    assert {p["problem"] for p in json.loads(broken_json.stdout)["problems"]} == {"missing", "size mismatch"}

    velero = _cli(live, "backups", "verify", cluster, "from-velero")
    assert velero.exit_code == 1
    assert "no manifest: written by Velero; integrity cannot be checked" in velero.stdout
    unknown = _cli(live, "backups", "verify", cluster, "nope")
    assert unknown.exit_code == 1 and "No backup 'nope'" in unknown.stderr


def test_web_sync_button_and_verify_button(aws: AwsAccounts, server_factory: Callable[..., StowageServer]) -> None:
    live = live_stack(aws, server_factory, env=web_env())
    write_velero_backup(live, "from-velero")
    write_velero_backup(live, "from-stowage")
    objects = add_manifest(live, "from-stowage")
    write_velero_backup(live, "half-done", finished=False)
    web = WebClient(live.server)
    try:
        assert web.login().status_code == 303
        tab = f"/projects/default/settings/clusters/{live.cluster['id']}/backups"
        page = web.get(tab)
        assert page.status_code == 200
        assert 'data-testid="sync-backups"' in page.text and "Sync from bucket" in page.text
        assert web.post(f"{tab}/sync", csrf=False).status_code == 403
        synced = web.post(f"{tab}/sync")
        assert synced.status_code == 200, synced.text
        assert "Imported 2, skipped 1, already known 0." in synced.text
        assert 'data-backup="from-velero"' in synced.text and 'data-backup="from-stowage"' in synced.text
        assert 'data-skipped="half-done"' in synced.text and "no velero-backup.json" in synced.text
        listed = web.get(tab).text
        assert re.search(r'data-backup="from-velero".*?data-testid="backup-origin">Velero<', listed, re.S)
        assert re.search(r'data-backup="from-stowage".*?data-testid="backup-origin">synced<', listed, re.S)

        backup_page = web.get(f"{tab}/from-stowage")
        assert 'data-testid="verify-backup"' in backup_page.text
        assert "Imported from the bucket: written by another Stowage" in backup_page.text
        assert "from-stowage-logs.gz</code> in its folder" in backup_page.text
        intact = web.post(f"{tab}/from-stowage/verify")
        assert intact.status_code == 200, intact.text
        assert f"Intact: all {objects} objects match their size and SHA-256 in the manifest." in intact.text

        s3 = live.owner_s3()
        folder = f"{live.cluster_prefix}/backups/from-stowage"
        body = s3.get_object(Bucket=live.bucket, Key=f"{folder}/from-stowage.tar.gz")["Body"].read()
        s3.put_object(Bucket=live.bucket, Key=f"{folder}/from-stowage.tar.gz", Body=body[::-1])
        broken = web.post(f"{tab}/from-stowage/verify")
        assert broken.status_code == 200
        assert f"1 problem</strong> in {objects} checked objects" in broken.text
        assert 'data-problem="from-stowage.tar.gz"' in broken.text and "hash mismatch" in broken.text

        velero = web.post(f"{tab}/from-velero/verify")
        assert "no manifest: written by Velero; integrity cannot be checked" in velero.text
        assert web.post(f"{tab}/nope/verify").status_code == 404
    finally:
        web.close()
