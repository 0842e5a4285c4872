"""A request body read incrementally, so that uploads of any size stream to disk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

from .storage import CHUNK, HubError

_MAX_LINE = 256 * 1024 * 1024  # one NDJSON line of a commit: a base64 regular file
MAX_JSON_BODY = 8 * 1024 * 1024  # create, settings, preupload, LFS batch, paths-info


class BodyReader:
    """A request body read incrementally: ``Content-Length`` or ``Transfer-Encoding: chunked``."""

    def __init__(self, rfile: BinaryIO, headers: Any):
        self.rfile = rfile
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        try:
            self.remaining = 0 if self.chunked else int(headers.get("Content-Length") or 0)
            self.valid = self.remaining >= 0
        except ValueError:
            self.remaining, self.valid = 0, False
        self.chunk_left = 0
        self.done = self.valid and not self.chunked and self.remaining == 0

    @property
    def length(self) -> int | None:
        return None if self.chunked else self.remaining

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; ``b""`` once the body is complete. A connection cut short is an error."""
        if self.done:
            return b""
        if not self.chunked:
            data = self.rfile.read(min(n, self.remaining))
            if not data:
                raise HubError(400, "Request body ended before Content-Length bytes")
            self.remaining -= len(data)
            self.done = self.remaining == 0
            return data
        if self.chunk_left == 0:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise HubError(400, "Malformed chunked request body") from exc
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.done = True
                return b""
            self.chunk_left = size
        data = self.rfile.read(min(n, self.chunk_left))
        if not data:
            raise HubError(400, "Request body ended inside a chunk")
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            self.rfile.readline(8)
        return data

    def readinto(self, buffer: memoryview) -> int:
        """Like ``read`` but into a caller's buffer, so large uploads allocate nothing per chunk."""
        if self.chunked:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        if self.done:
            return 0
        n = self.rfile.readinto(buffer[: self.remaining])
        if not n:
            raise HubError(400, "Request body ended before Content-Length bytes")
        self.remaining -= n
        self.done = self.remaining == 0
        return n

    def all(self, limit: int = 64 * 1024 * 1024) -> bytes:
        parts, size = [], 0
        while chunk := self.read(CHUNK):
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                raise HubError(413, f"Request body larger than {limit} bytes")
        return b"".join(parts)

    def json(self, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
        """The body as a JSON object; anything else (a list, a string, bad JSON) is a 400."""
        raw = self.all(limit)
        try:
            data = json.loads(raw) if raw.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HubError(400, f"Request body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise HubError(400, f"Request body must be a JSON object, not {type(data).__name__}")
        return data

    def lines(self) -> Iterator[bytes]:
        """The body split on newlines, without holding more than one line in memory."""
        parts: list[bytes] = []
        size = 0
        while chunk := self.read(CHUNK):
            pieces = chunk.split(b"\n")
            if len(pieces) > 1:
                yield b"".join([*parts, pieces[0]])
                yield from pieces[1:-1]
                parts, size = [pieces[-1]], len(pieces[-1])
            else:
                parts.append(chunk)
                size += len(chunk)
                if size > _MAX_LINE:
                    raise HubError(413, f"A line of the commit payload is larger than {_MAX_LINE} bytes")
        tail = b"".join(parts)
        if tail.strip():
            yield tail
