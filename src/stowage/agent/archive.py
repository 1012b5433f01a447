"""A gzip'd tar written straight into an S3 multipart upload, with bounded memory.

The caller adds regular-file entries; their bytes go, in chunks of ``CHUNK`` bytes, to a compressor thread
(zlib and hashlib release the GIL, so compression overlaps the caller's JSON work), and the compressed
stream is cut into parts that an uploader thread sends with ``upload_part`` while the next part fills. At
most a few chunks and parts are in memory at once, whatever the number of entries. Size and SHA-256 of the
object are computed on the way.

Agents cannot delete objects (their credentials lack ``s3:DeleteObject``), so a failed or cancelled upload is
aborted with ``abort_multipart_upload``, which leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import queue
import tarfile
import threading
import zlib
from dataclasses import dataclass
from typing import Any

# S3's minimum part size (except the last); kept small so memory stays flat.
PART_SIZE = 5 * 1024 * 1024
# S3 allows 10,000 parts: the part size doubles every this many parts so any size fits.
PARTS_PER_STEP = 1000
CHUNK = 1024 * 1024
BLOCK = 512
DEFAULT_LEVEL = 1
_STOP = object()


@dataclass(frozen=True, slots=True)
class Written:
    """What an upload produced: the object's size and SHA-256 (hex)."""

    size: int
    sha256: str


class UploadFailed(Exception):
    """Writing to S3 failed; ``cause`` is the underlying exception (a botocore error, usually)."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class MultipartSink:
    """Bytes in, an S3 multipart upload out: parts are uploaded by a background thread as they fill."""

    def __init__(self, s3: Any, bucket: str, key: str, *, part_size: int = PART_SIZE) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self._buffer = bytearray()
        self._sha = hashlib.sha256()
        self._size = 0
        self._parts: list[dict[str, Any]] = []
        self._next_part = 1
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._upload_id: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Create the multipart upload and start the uploader thread."""
        try:
            answer = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            raise UploadFailed(f"CreateMultipartUpload of s3://{self.bucket}/{self.key}", exc) from exc
        self._upload_id = str(answer["UploadId"])
        self._thread = threading.Thread(target=self._run, name="s3-multipart", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            if self._error is not None:
                continue  # drain: the upload is lost anyway
            number, body = job
            try:
                answer = self.s3.upload_part(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body
                )
                self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            except Exception as exc:  # noqa: BLE001 - handed to the writer, which raises it
                self._error = UploadFailed(f"UploadPart {number} of s3://{self.bucket}/{self.key}", exc)

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> None:
        """Append bytes; a full part is queued for upload (blocking while the previous one is still queued)."""
        self._check()
        self._sha.update(data)
        self._size += len(data)
        self._buffer += data
        if len(self._buffer) >= self.part_size:
            self._send(bytes(self._buffer[: self.part_size]))
            del self._buffer[: self.part_size]

    def _send(self, body: bytes) -> None:
        number = self._next_part
        self._next_part += 1
        if number % PARTS_PER_STEP == 0:
            self.part_size *= 2
        self._queue.put((number, body))

    def finish(self) -> Written:
        """Upload what is left, wait for every part and complete the upload."""
        self._check()
        if self._buffer or self._next_part == 1:
            self._send(bytes(self._buffer))
            self._buffer.clear()
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join()
        self._check()
        parts = sorted(self._parts, key=lambda p: int(p["PartNumber"]))
        try:
            self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
            )
        except Exception as exc:
            raise UploadFailed(f"CompleteMultipartUpload of s3://{self.bucket}/{self.key}", exc) from exc
        self._upload_id = None
        return Written(self._size, self._sha.hexdigest())

    def abort(self) -> str | None:
        """Stop and abort the upload (nothing stays in the bucket); returns why the abort failed, if it did."""
        if self._thread is not None and self._thread.is_alive():
            self._error = self._error or UploadFailed("aborted", RuntimeError("aborted"))
            self._queue.put(_STOP)
            self._thread.join()
        self._buffer.clear()
        if self._upload_id is None:
            return None
        upload_id, self._upload_id = self._upload_id, None
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, who logs it
            return f"AbortMultipartUpload of s3://{self.bucket}/{self.key} (upload {upload_id}) failed: {exc}"
        return None


_ZEROS = bytes(BLOCK)
_HEADER_END = bytes(12)


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


class TarGzWriter:
    """Regular-file entries into a gzip'd tar (deterministic headers) whose bytes go to a ``MultipartSink``."""

    def __init__(self, sink: MultipartSink, *, level: int = DEFAULT_LEVEL, mtime: int = 0, mode: int = 0o755) -> None:
        self.sink = sink
        self.entries = 0
        self.raw_size = 0
        self._mtime = mtime
        self._raw = bytearray()
        # wbits 31: a gzip wrapper with mtime 0 and no file name, so the output depends on the entries only.
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tar-gzip", daemon=True)
        self._thread.start()
        self._closed = False
        # Every ustar field but name, size, checksum and prefix is the same for all entries: built once, and
        # their share of the checksum (computed with the checksum field as eight spaces) summed once.
        self._mode_ids = _octal(mode, 8) + _octal(0, 8) + _octal(0, 8)
        self._mtime_field = _octal(mtime, 12)
        self._after_checksum = (
            b"0" + b"\0" * 100 + b"ustar\x0000" + b"\0" * 32 + b"\0" * 32 + _octal(0, 8) + _octal(0, 8)
        )
        self._fixed_sum = sum(self._mode_ids) + sum(self._mtime_field) + sum(b" " * 8) + sum(self._after_checksum)

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is _STOP:
                return
            if self._error is not None:
                continue
            try:
                out = self._compressor.flush() if chunk is None else self._compressor.compress(chunk)
                if out:
                    self.sink.write(out)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _header(self, path: str, size: int, size_field: bytes, size_sum: int) -> bytes:
        try:
            name = path.encode("ascii")
        except UnicodeEncodeError:
            return self._pax_header(path, size)
        prefix = b""
        if len(name) > 100:
            cut = name.find(b"/", len(name) - 101)
            if cut <= 0 or cut > 155:
                return self._pax_header(path, size)
            prefix, name = name[:cut], name[cut + 1 :]
        checksum = size_sum + sum(name) + sum(prefix)
        return b"".join(
            (
                name.ljust(100, b"\0"),
                self._mode_ids,
                size_field,
                self._mtime_field,
                b"%06o\0 " % checksum,
                self._after_checksum,
                prefix.ljust(155, b"\0"),
                _HEADER_END,
            )
        )

    def _pax_header(self, path: str, size: int) -> bytes:
        info = tarfile.TarInfo(path)
        info.size = size
        info.mtime = self._mtime
        info.mode = 0o755
        info.type = tarfile.REGTYPE
        info.uname = info.gname = ""
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def add(self, path: str, data: bytes) -> None:
        """Append one regular file."""
        self.add_copies((path,), data)

    def add_copies(self, paths: tuple[str, ...], *parts: bytes | memoryview) -> None:
        """Append one regular file under each path (Velero's preferred-version copies) whose bytes are ``parts``.

        The parts are written as they are: the caller need not join them into one bytes object first.
        """
        size = sum(map(len, parts))
        size_field = _octal(size, 12)
        size_sum = self._fixed_sum + sum(size_field)
        padding = _ZEROS[: -size % BLOCK]
        raw = self._raw
        for path in paths:
            raw += self._header(path, size, size_field, size_sum)
            for part in parts:
                raw += part
            raw += padding
        self.entries += len(paths)
        if len(raw) >= CHUNK:
            self._flush_raw()

    def _flush_raw(self) -> None:
        self._check()
        # The buffer itself is handed over (zlib reads any buffer) and a new one started: no copy of the chunk.
        chunk, self._raw = self._raw, bytearray()
        self.raw_size += len(chunk)
        self._queue.put(chunk)

    def close(self) -> Written:
        """End the archive, flush the compressor and complete the upload."""
        self._raw += b"\0" * (2 * BLOCK)
        self._flush_raw()
        self._queue.put(None)
        self._queue.put(_STOP)
        self._thread.join()
        self._closed = True
        self._check()
        return self.sink.finish()

    def abort(self) -> str | None:
        """Stop writing and abort the multipart upload; returns why the abort failed, if it did."""
        if not self._closed:
            self._error = self._error or RuntimeError("aborted")
            self._queue.put(_STOP)
            self._thread.join()
            self._closed = True
        self._raw.clear()
        return self.sink.abort()
