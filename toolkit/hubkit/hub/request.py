"""One HTTP request to the local Hub: parsing, the answer's plumbing, pagination, and the server.

A ``Request`` is the ``BaseHTTPRequestHandler`` of one connection; each request on it is parsed
here, then handed to the server's router (``routes.route``), whose route functions take it.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import socket
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlencode

from .auth import Authenticator, User
from .body import BodyReader
from .storage import BlobStore, HubError, RepoStore

logger = logging.getLogger(__name__)

URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/", "kernel": "kernels/"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LOOPBACK_HOSTS = frozenset({"localhost", "::1"})
_SIMPLE_BODY_TYPES = ("", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
_MAX_GET_BODY = 64 * 1024  # drained so the connection stays usable; larger bodies are refused


def field(body: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "request body") -> Any:
    """``body[key]`` if present and of type ``kind`` (None if absent or null); else a 400 naming it."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise HubError(400, f"'{key}' in the {where} must be a {names.replace('str', 'string')}")
    return value


def flag(value: str | None) -> bool:
    """A query flag as the Hub reads it: ``1``, ``true`` or ``yes`` (any case) is on."""
    return (value or "").lower() in ("1", "true", "yes")


class HubState(Protocol):
    """What a request uses of its ``LocalHub`` (server.py), which imports the routes that use it."""

    host: str
    auth: Authenticator
    blobs: BlobStore
    repos: RepoStore

    @property
    def endpoint(self) -> str: ...

    def sign(self, repo_type: str, repo_id: str, oid: str, size: int, expires: int) -> str: ...


class Server(ThreadingHTTPServer):
    """The listening socket: its ``Request`` handlers find the Hub and the router here."""

    daemon_threads = True
    allow_reuse_address = True
    hub: HubState
    router: Callable[[Request, str, list[str]], Callable[[], None]]


class Server6(Server):
    address_family = socket.AF_INET6


class Request(BaseHTTPRequestHandler):
    """One HTTP connection; each request is parsed, then routed by its path segments."""

    protocol_version = "HTTP/1.1"
    server_version = "hubkit-hub"
    timeout = 300
    server: Server
    method: str
    raw_path: str
    query_all: dict[str, list[str]]
    query: dict[str, str]
    body: BodyReader
    user: User
    sent_headers: bool

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def send_header(self, keyword: str, value: str) -> None:
        """Control characters (a CR in an echoed revision) never reach a header, so none can be forged."""
        super().send_header(keyword, _CONTROL.sub(" ", str(value)))

    def end_headers(self) -> None:
        """Every answer carries a request id (the client's own, if it sent one), as on the Hub."""
        headers = getattr(self, "headers", None)
        request_id = headers and (headers.get("X-Request-Id") or headers.get("X-Amzn-Trace-Id"))
        self.send_header("X-Request-Id", request_id or str(uuid.uuid4()))
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    @property
    def hub(self) -> HubState:
        return self.server.hub

    @property
    def base_url(self) -> str:
        """The URL the client used to reach this server, for the links in answers."""
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.hub.endpoint

    def _handle(self, method: str) -> None:
        self.method = method
        self.sent_headers = False
        raw, _, query = self.path.partition("?")
        self.raw_path = raw
        self.query_all = parse_qs(query, keep_blank_values=True)
        self.query = {k: v[-1] for k, v in self.query_all.items()}
        self.body = BodyReader(self.rfile, self.headers)
        try:
            if not self.body.valid:
                raise HubError(400, "Invalid Content-Length header")
            if method in ("GET", "HEAD") and not self.body.done:
                self.body.all(_MAX_GET_BODY)  # drained: it must not be read as the next request
            if self.hub.auth.open:
                self._check_open_request(method)
            self.user = self.hub.auth.user(self.headers.get("Authorization"))
            segments = [unquote(s) for s in raw.split("/")[1:]]
            self.server.router(self, method, segments)()
        except HubError as exc:
            self._send_error(exc)
        except (ConnectionError, TimeoutError):  # the client went away or stalled
            self.close_connection = True
        except Exception:
            logger.exception("Unhandled error for %s %s", method, self.path)
            self._send_error(HubError(500, "Internal server error in the local Hub; see its log."))

    def send_body(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer with ``body``; an unread request body closes the connection after it."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if not self.body.done:
            self.send_header("Connection", "close")  # an unread request body would poison the next request
            self.close_connection = True
        self.end_headers()
        self.sent_headers = True
        if self.method != "HEAD":
            self.wfile.write(body)

    def send_json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """Answer with ``obj`` as JSON."""
        # default=str: card metadata may hold YAML dates, which the Hub returns as strings
        self.send_body(
            status, json.dumps(obj, default=str).encode(), "application/json; charset=utf-8", headers
        )

    def _send_error(self, exc: HubError) -> None:
        if self.sent_headers:
            self.close_connection = True
            return
        headers = {
            "X-Error-Message": exc.message.encode("ascii", "replace").decode().replace("\n", " ")[:1000]
        }
        if exc.code:
            headers["X-Error-Code"] = exc.code
        headers.update(exc.headers)
        try:
            self.send_json({"error": exc.message}, exc.status, headers)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _check_open_request(self, method: str) -> None:
        """An open Hub has no tokens, so it refuses what a web page could make a browser send it:
        requests for another host name (DNS rebinding) and cross-site form or text POSTs."""
        host = (self.headers.get("Host") or "").strip().lower()
        name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        bound = self.hub.host.lower() not in ("", "0.0.0.0", "::") and name == self.hub.host.lower()
        if host and not (bound or name in _LOOPBACK_HOSTS or name.startswith("127.")):
            raise HubError(403, f"Host '{host}' is not served: an open local Hub answers loopback names only")
        media = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if method == "POST" and media in _SIMPLE_BODY_TYPES and "/paths-info/" not in self.raw_path:
            raise HubError(
                415,
                f"Content-Type '{media or 'none'}' is not accepted for writes to an open local Hub: "
                "send application/json or application/x-ndjson",
            )

    def repo_url(self, repo_type: str, repo_id: str) -> str:
        """A repo's web URL, as the Hub spells it for each repo type."""
        return f"{self.base_url}/{URL_PREFIX[repo_type]}{repo_id}"

    def _next_link(self, cursor: int) -> dict[str, str]:
        pairs = [(k, v) for k, values in self.query_all.items() if k != "cursor" for v in values]
        query = urlencode([*pairs, ("cursor", str(cursor))])
        return {"Link": f'<{self.base_url}{self.raw_path}?{query}>; rel="next"'}  # raw_path is still encoded

    def page(self, items: Iterable[Any], default: int) -> tuple[list[Any], dict[str, str]]:
        """Cursor pagination with a ``Link: <...>; rel="next"`` header, as the Hub does.

        ``items`` may be lazy (a repo's history): only the first cursor + limit + 1 are produced.
        """
        try:
            cursor = int(self.query.get("cursor") or 0)
            limit = max(1, min(int(self.query.get("limit") or default), default))
            if cursor < 0:
                raise ValueError
        except ValueError as exc:
            raise HubError(400, "Invalid cursor or limit") from exc
        page = list(itertools.islice(items, cursor, cursor + limit + 1))
        return page[:limit], self._next_link(cursor + limit) if len(page) > limit else {}
