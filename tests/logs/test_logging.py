"""The server's log plumbing: JSON lines, request ids (event loop, thread pool, copied contexts), redaction."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stowage import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Route logging into a buffer as JSON (as ``stowage serve`` does), and restore the root logger afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    logs.configure("DEBUG", "json", stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET /x?token=stw_abcdefghijkl&a=1", "stw_abcdefghijkl"),
        ("Authorization: Bearer stwa_abcdefghijkl", "abcdefghijkl"),
        ('{"AccessKeyId": "ASIA1", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG", "Token": "IQoJb3JpZ"}', "wJalr"),
        ('{"AccessKeyId": "ASIA1", "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG", "Token": "IQoJb3JpZ"}', "IQoJb"),
        ("login failed: password=hunter2-horse", "hunter2"),
        ("Cookie: csrf=abc; stowage_session=eyJ1c2VyIjo", "eyJ1c2VyIjo"),
        ("AWS_SECRET_ACCESS_KEY=abc123/xyz and aws_session_token='FQoGZX'", "abc123"),
        ("AWS_SECRET_ACCESS_KEY=abc123/xyz and aws_session_token='FQoGZX'", "FQoGZX"),
        ("session " + "A" * 200, "A" * 200),
        ("key -----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY----- done", "MIIE"),
    ],
)
def test_redact_masks_secrets(text: str, secret: str) -> None:
    masked = logs.redact(text)
    assert secret not in masked
    assert logs.MASK in masked
    assert logs.redact(masked) == masked  # idempotent: a second pass changes nothing


def test_redact_leaves_ordinary_text() -> None:
    for text in ("agent token rotated for cluster prod", "validation failed: s3:PutObject denied", "GET /healthz 200"):
        assert logs.redact(text) == text


def test_json_lines_with_extra_fields_and_secret_fields_masked(captured: io.StringIO) -> None:
    log = logging.getLogger("stowage.test")
    log.info("vended %s", "creds", extra={"cluster": "prod", "secretAccessKey": "abc", "password": "x"})
    try:
        raise ValueError("bad token=stw_abcdefghijkl")
    except ValueError:
        log.exception("boom")
    first, second = lines(captured)
    assert first["level"] == "info" and first["logger"] == "stowage.test" and first["event"] == "vended creds"
    assert first["time"].endswith("Z") and first["cluster"] == "prod"
    assert first["secretAccessKey"] == logs.MASK and first["password"] == logs.MASK
    assert second["level"] == "error" and "ValueError" in second["exception"]
    assert "stw_abcdefghijkl" not in captured.getvalue()


def test_warnings_and_third_party_loggers_become_json(captured: io.StringIO) -> None:
    import warnings

    logging.getLogger("uvicorn.error").warning("from uvicorn")
    logging.getLogger("procrastinate.worker").info("job", extra={"action": "start_job"})
    warnings.warn("an SAWarning-like warning", UserWarning, stacklevel=1)
    found = {line["logger"]: line for line in lines(captured)}
    assert found["uvicorn.error"]["event"] == "from uvicorn"
    assert found["procrastinate.worker"]["action"] == "start_job"
    assert "SAWarning-like" in found["py.warnings"]["event"]


def test_text_format(captured: io.StringIO) -> None:
    stream = io.StringIO()
    logs.configure("INFO", "text", stream=stream)
    token = logs.REQUEST_ID.set("req-1")
    try:
        logging.getLogger("stowage.test").info("hello password=hunter2", extra={"cluster": "prod"})
    finally:
        logs.REQUEST_ID.reset(token)
    text = stream.getvalue()
    assert "INFO stowage.test hello password=[REDACTED] requestId=req-1 cluster=prod" in text
    with pytest.raises(ValueError, match="STOWAGE_LOG_FORMAT"):
        logs.configure("INFO", "xml")


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("abc-123", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("bad id", False),
        ("x\r\ny", False),
        ("stw_abcdefghijkl", False),
        ("", False),
    ],
)
def test_incoming_request_ids_are_kept_only_when_sane(incoming: str, kept: bool) -> None:
    answer = logs.accept_request_id(incoming)
    assert (answer == incoming) is kept
    if not kept:
        assert len(answer) == 32


def test_request_ids_reach_handlers_the_thread_pool_and_copied_contexts(captured: io.StringIO) -> None:
    app = FastAPI()
    log = logging.getLogger("stowage.test")

    @app.get("/sync")
    def sync_route() -> dict[str, Any]:
        log.info("in the thread pool")
        seen: list[str | None] = []
        context = contextvars.copy_context()
        worker = threading.Thread(target=context.run, args=(lambda: seen.append(logs.REQUEST_ID.get()),))
        worker.start()
        worker.join()
        return {"thread": seen[0]}

    @app.get("/async")
    async def async_route() -> dict[str, Any]:
        log.info("in the event loop")
        return {"id": logs.REQUEST_ID.get()}

    app.add_middleware(logs.RequestIds)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [
                await client.get("/sync", headers={"X-Request-ID": "given-1"}),
                await client.get("/async", headers={"X-Request-ID": "not sane!"}),
            ]

    given, generated = asyncio.run(run())
    assert given.headers["x-request-id"] == "given-1" and given.json() == {"thread": "given-1"}
    new_id = generated.headers["x-request-id"]
    assert new_id != "not sane!" and generated.json() == {"id": new_id}
    by_event = {line["event"]: line for line in lines(captured)}
    assert by_event["in the thread pool"]["requestId"] == "given-1"
    assert by_event["in the event loop"]["requestId"] == new_id
