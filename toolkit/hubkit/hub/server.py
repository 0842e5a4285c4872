"""The HTTP side of the local Hub: the routes of the Hugging Face Hub API that the stock clients use.

huggingface_hub, datasets, transformers and peft talk to it unmodified once ``HF_ENDPOINT``
points here and Xet is off (``HF_HUB_DISABLE_XET=1``): uploads use the plain LFS protocol.
Standard library only, so that importing it never imports the HF clients.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import html
import itertools
import json
import logging
import re
import secrets
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlencode

from ..errors import HubkitError
from . import cards, history
from .auth import Authenticator, Token, User
from .storage import (
    CHUNK,
    REPO_TYPES,
    BlobStore,
    Commit,
    Entry,
    HubError,
    Repo,
    RepoStore,
    make_entry,
    repo_not_found,
    revision_not_found,
    validate_path_in_repo,
)

logger = logging.getLogger("hubkit.hub")

_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/", "kernel": "kernels/"}
_API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space", "kernels": "kernel"}
_RESERVED = frozenset("api models datasets spaces docs settings organizations new login join".split())
_MAX_LINE = 256 * 1024 * 1024  # one NDJSON line of a commit: a base64 regular file
_TREE_PAGE, _TREE_PAGE_EXPANDED, _COMMITS_PAGE = 1000, 50, 50
_UPLOAD_URL_TTL = 24 * 3600
_MAX_JSON_BODY = 8 * 1024 * 1024  # create, settings, preupload, LFS batch, paths-info
_MAX_CARD_BODY = 2 * 1024 * 1024  # validate-yaml: a README of at most _MAX_CARD_BYTES, JSON-escaped
_MAX_CARD_BYTES = 1024 * 1024  # larger READMEs get no cardData and are not parsed
# the first path segment after /api/{type}s/{repo_id}/: tells a namespace-less repo id from a namespace
_REPO_ROUTES = frozenset(
    "revision preupload commit tree paths-info refs commits branch tag settings auth-check super-squash "
    "lfs-files".split()
)


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

    def json(self, limit: int = _MAX_JSON_BODY) -> dict[str, Any]:
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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT_ID = re.compile(r"^[0-9a-f]{7,40}$")
_LOOPBACK_HOSTS = frozenset({"localhost", "::1"})
_SIMPLE_BODY_TYPES = ("", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data")
_MAX_GET_BODY = 64 * 1024  # drained so the connection stays usable; larger bodies are refused


def _field(body: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "request body") -> Any:
    """``body[key]`` if present and of type ``kind`` (None if absent or null); else a 400 naming it."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise HubError(400, f"'{key}' in the {where} must be a {names.replace('str', 'string')}")
    return value


def _b64decode(content: Any, what: str) -> bytes:
    """Strict base64 (no stray characters, right padding): a typo must not commit an empty file."""
    try:
        if not isinstance(content, str):
            raise TypeError
        return base64.b64decode(content, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise HubError(400, f"Invalid base64 {what}") from exc


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _split_revision(segments: list[str]) -> tuple[str, list[str]]:
    """Revision and the rest of the path. Clients URL-encode revisions (``refs%2Fpr%2F1``);
    an unencoded ``refs/pr/1`` or ``refs/convert/parquet`` is accepted too."""
    if not segments or not segments[0]:
        raise HubError(400, "Missing revision in URL")
    if segments[0] == "refs" and len(segments) >= 3:
        return "/".join(segments[:3]), segments[3:]
    return segments[0], segments[1:]


def _file_json(path: str, entry: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
    if entry.lfs:
        out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return out


@functools.lru_cache(maxsize=256)
def _card_metadata(blob: Path) -> dict[str, Any] | None:
    """A README's valid metadata, parsed once per content (blobs are immutable, named by sha256).

    Callers must not modify the result: it is shared between requests.
    """
    meta, errors = cards.front_matter(blob.read_bytes().decode("utf-8", "replace"))
    return meta if meta and not errors else None


def _commit_ref_json(commit: Commit) -> dict[str, str]:
    return {"id": commit.id, "title": commit.title, "date": commit.date}


class _Handler(BaseHTTPRequestHandler):
    """One HTTP connection; each request is routed by its path segments."""

    protocol_version = "HTTP/1.1"
    server_version = "hubkit-hub"
    timeout = 300
    server: _Server

    # plumbing -------------------------------------------------------------------------------------
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
    def hub(self) -> LocalHub:
        return self.server.hub

    @property
    def base_url(self) -> str:
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
            self.user: User = self.hub.auth.user(self.headers.get("Authorization"))
            segments = [unquote(s) for s in raw.split("/")[1:]]
            self._route(method, segments)()
        except HubError as exc:
            self._send_error(exc)
        except (ConnectionError, TimeoutError):  # the client went away or stalled
            self.close_connection = True
        except Exception:
            logger.exception("Unhandled error for %s %s", method, self.path)
            self._send_error(HubError(500, "Internal server error in the local Hub; see its log."))

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
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

    def _json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        # default=str: card metadata may hold YAML dates, which the Hub returns as strings
        self._send(status, json.dumps(obj, default=str).encode(), "application/json; charset=utf-8", headers)

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
            self._json({"error": exc.message}, exc.status, headers)
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

    # routing --------------------------------------------------------------------------------------
    def _route(self, method: str, segs: list[str]) -> Callable[[], None]:
        match segs:
            case ["api", "whoami-v2"] if method == "GET":
                return self.whoami
            case ["api", "repos", "create"] if method == "POST":
                return self.create_repo
            case ["api", "repos", "delete"] if method == "DELETE":
                return self.delete_repo
            case ["api", "validate-yaml"] if method == "POST":
                return self.validate_yaml
            case ["api", "repos", "move"] if method == "POST":
                return self.move_repo
            case ["api", "settings", "repositories"] if method == "GET":
                return lambda: self.repo_storage(self.user.name)
            case ["api", "organizations", namespace, "settings", "repositories"] if method == "GET":
                return lambda: self.repo_storage(namespace)
            case ["api", kind, name] if kind in _API_TYPES:
                raise repo_not_found(name)  # a repo id without a namespace: never a repo here
            case ["api", kind, name, route, *_] if (
                kind in _API_TYPES
                and route in _REPO_ROUTES
                and self.hub.repos.get(_API_TYPES[kind], f"{name}/{route}") is None
            ):
                raise repo_not_found(name)
            case ["api", kind] if kind in _API_TYPES and method == "GET":
                return lambda: self.list_repos(_API_TYPES[kind])
            case ["api", kind, namespace, name, *rest] if kind in _API_TYPES:
                return self._route_repo_api(method, _API_TYPES[kind], f"{namespace}/{name}", rest)
        repo_type = "model"
        if segs and segs[0] in ("datasets", "spaces", "kernels") and len(segs) > 3:
            repo_type, segs = _API_TYPES[segs[0]], segs[1:]
        match segs:
            case [namespace, git_name, "info", "lfs", "objects", "batch"] if (
                method == "POST" and git_name.endswith(".git")
            ):
                return lambda: self.lfs_batch(repo_type, f"{namespace}/{git_name[:-4]}")
            case [namespace, git_name, "info", "lfs", "objects", oid] if (
                method == "PUT" and git_name.endswith(".git")
            ):
                return lambda: self.lfs_upload(repo_type, f"{namespace}/{git_name[:-4]}", oid)
            case [namespace, name, "resolve", *rest] if method in ("GET", "HEAD"):
                revision, path = _split_revision(rest)
                return lambda: self.resolve(repo_type, f"{namespace}/{name}", revision, "/".join(path))
            case [name, "resolve", *_] if method in ("GET", "HEAD"):
                raise repo_not_found(name)  # a repo id without a namespace
        raise HubError(404, f"No route for {method} {self.raw_path}")

    def _route_repo_api(
        self, method: str, repo_type: str, repo_id: str, rest: list[str]
    ) -> Callable[[], None]:
        match rest:
            case [] if method == "GET":
                return lambda: self.repo_info(repo_type, repo_id, None)
            case ["revision", *rev] if method == "GET":
                return lambda: self.repo_info(repo_type, repo_id, _split_revision(rev)[0])
            case ["preupload", *rev] if method == "POST":
                return lambda: self.preupload(repo_type, repo_id, _split_revision(rev)[0])
            case ["commit", *rev] if method == "POST":
                return lambda: self.commit(repo_type, repo_id, _split_revision(rev)[0])
            case ["tree", *rev] if method == "GET":
                revision, path = _split_revision(rev)
                return lambda: self.tree(repo_type, repo_id, revision, "/".join(path))
            case ["paths-info", *rev] if method == "POST":
                return lambda: self.paths_info(repo_type, repo_id, _split_revision(rev)[0])
            case ["refs"] if method == "GET":
                return lambda: self.refs(repo_type, repo_id)
            case ["commits", *rev] if method == "GET":
                return lambda: self.commits(repo_type, repo_id, _split_revision(rev)[0])
            case ["branch", *name] if method in ("POST", "DELETE") and name:
                return lambda: self.branch(repo_type, repo_id, "/".join(name))
            case ["tag", *name] if method in ("POST", "DELETE") and name:
                return lambda: self.tag(repo_type, repo_id, "/".join(name))
            case ["settings"] if method == "PUT":
                return lambda: self.settings(repo_type, repo_id)
            case ["auth-check"] if method == "GET":
                return lambda: self.auth_check(repo_type, repo_id)
            case ["super-squash", *rev] if method == "POST":
                return lambda: self.super_squash(repo_type, repo_id, _split_revision(rev)[0])
            case ["lfs-files"] if method == "GET":
                return lambda: self.lfs_files(repo_type, repo_id)
            case ["lfs-files", "batch"] if method == "POST":
                return lambda: self.delete_lfs_files(repo_type, repo_id)
        raise HubError(404, f"No route for {method} {self.raw_path}")

    # access control -------------------------------------------------------------------------------
    def _require_write(self, action: str) -> None:
        if self.user.name is None:
            raise HubError(401, f"You must be authenticated with a write token to {action}.")
        if not self.user.can_write:
            raise HubError(403, f"The token of '{self.user.name}' is read-only: it cannot {action}.")

    def _may_see(self, repo: Repo) -> bool:
        return not repo.meta.private or self.user.member_of(repo.meta.repo_id.split("/")[0])

    def _readable(self, repo_type: str, repo_id: str) -> Repo:
        """The repo, or 404 RepoNotFound when it is missing or private outside the caller's namespaces."""
        repo = self.hub.repos.get(repo_type, repo_id)
        if repo is None and (moved := self.hub.repos.redirect(repo_type, repo_id)) is not None:
            target = self.hub.repos.get(repo_type, moved)
            if target is not None and self._may_see(target):
                location = {"Location": self._moved_url(moved)}
                raise HubError(307, f"{repo_id} moved to {moved}", headers=location)
        if repo is None or not self._may_see(repo):
            raise repo_not_found(repo_id)
        return repo

    def _moved_url(self, new_id: str) -> str:
        """This request's path and query with the repo id (the two segments after the type) replaced."""
        segments = self.raw_path.split("/")
        start = 3 if segments[1] == "api" else 2 if segments[1] in ("datasets", "spaces", "kernels") else 1
        git = ".git" if segments[start + 1].endswith(".git") else ""  # the LFS routes: {repo_id}.git/info/lfs
        segments[start : start + 2] = [quote(part, safe="") for part in new_id.split("/")]
        segments[start + 1] += git
        query = self.path.partition("?")[2]
        return "/".join(segments) + (f"?{query}" if query else "")

    def _writable(self, repo_type: str, repo_id: str, pull_request: bool = False) -> Repo:
        """The repo, if the caller may write to it: a member of its namespace, or, for a pull
        request (a ``create_pr`` commit and its uploads), any write token that may see it, as on the Hub.
        """
        repo = self._readable(repo_type, repo_id)
        self._require_write(f"write to {repo_id}")
        if not pull_request:
            self._require_member(repo_id.split("/")[0], f"write to {repo_type} {repo_id}")
        return repo

    def _require_member(self, namespace: str, action: str) -> None:
        """403, as on the Hub, when the caller neither is ``namespace`` nor belongs to that organisation."""
        if not self.user.member_of(namespace):
            raise HubError(
                403,
                f"You don't have the rights to {action}: '{namespace}' is neither you nor one of your orgs",
            )

    def _url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.base_url}/{_URL_PREFIX[repo_type]}{repo_id}"

    # users and repos ------------------------------------------------------------------------------
    def whoami(self) -> None:
        user = self.user
        if user.name is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        self._json(
            {
                "type": "user",
                "id": hashlib.sha1(user.name.encode()).hexdigest()[:24],
                "name": user.name,
                "fullname": user.name,
                "email": None,
                "emailVerified": False,
                "isPro": False,
                "canPay": False,
                "avatarUrl": "",
                "orgs": [
                    {"type": "org", "name": org, "fullname": org, "roleInOrg": user.role} for org in user.orgs
                ],
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": user.token_name, "role": user.role},
                },
            }
        )

    def create_repo(self) -> None:
        self._require_write("create a repo")
        assert self.user.name is not None
        body = self.body.json()
        name = _field(body, "name", str)
        namespace = _field(body, "organization", str) or self.user.name
        repo_type = _field(body, "type", str) or "model"
        if not isinstance(name, str) or not isinstance(namespace, str):
            raise HubError(400, "Missing repo 'name'")
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type '{repo_type}': expected one of {', '.join(REPO_TYPES)}")
        if namespace in _RESERVED:
            raise HubError(400, f"'{namespace}' is a reserved name and cannot be a namespace")
        self._require_member(namespace, f"create a {repo_type} under the namespace '{namespace}'")
        private = _field(body, "visibility", str) == "private" or _field(body, "private", bool) is True
        repo_id = f"{namespace}/{name}"
        try:
            self.hub.repos.create(
                repo_type, repo_id, private, self.user.name, cards.default_gitattributes(repo_type)
            )
        except HubError as exc:
            if exc.status == 409:
                self._json({"error": exc.message, "url": self._url(repo_type, repo_id)}, 409)
                return
            raise
        self._json({"url": self._url(repo_type, repo_id), "name": repo_id, "id": repo_id})

    def delete_repo(self) -> None:
        body = self.body.json()
        repo_type = _field(body, "type", str) or "model"
        name = _field(body, "name", str)
        if not name:
            raise HubError(400, "Missing repo 'name'")
        repo_id = f"{_field(body, 'organization', str) or self.user.name}/{name}"
        repo = self._writable(repo_type, repo_id)
        self.hub.repos.delete(repo)
        self._json({})

    def move_repo(self) -> None:
        """POST /api/repos/move {fromRepo, toRepo, type}: rename; the old id redirects to the new one."""
        body = self.body.json()
        repo_type = str(body.get("type") or "model")
        from_id, to_id = str(body.get("fromRepo") or ""), str(body.get("toRepo") or "")
        if repo_type not in REPO_TYPES or to_id.count("/") != 1:
            raise HubError(400, "Body must be {fromRepo: 'ns/name', toRepo: 'ns/name', type: 'model'|...}")
        repo = self._writable(repo_type, from_id)
        namespace = to_id.split("/")[0]
        self._require_member(namespace, f"move {repo_type} {from_id} to the namespace '{namespace}'")
        self.hub.repos.move(repo, to_id)
        self._json({"url": self._url(repo_type, to_id)})

    def settings(self, repo_type: str, repo_id: str) -> None:
        repo = self._writable(repo_type, repo_id)
        body = self.body.json()
        if body.get("visibility") not in (None, "private", "public"):
            raise HubError(400, "'visibility' must be 'private' or 'public'")
        _field(body, "private", bool)
        if "gated" in body and not (body["gated"] is False or body["gated"] in ("auto", "manual")):
            raise HubError(400, "'gated' must be false, 'auto' or 'manual'")
        with self.hub.repos.lock(repo):
            if "visibility" in body:
                repo.meta.private = body["visibility"] == "private"
            if "private" in body:
                repo.meta.private = bool(body["private"])
            if "gated" in body:
                repo.meta.gated = body["gated"]
            self.hub.repos.save_meta(repo)
        self._json({})

    def super_squash(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._writable(repo_type, repo_id)
        assert self.user.name is not None
        message = str(self.body.json().get("message") or "").strip() or f"Super-squash branch '{revision}'"
        with self.hub.repos.lock(repo):
            commit_id = history.super_squash(repo, revision, message, self.user.name)
        self._json({"commitId": commit_id})

    def lfs_files(self, repo_type: str, repo_id: str) -> None:
        repo = self._writable(repo_type, repo_id)
        page, headers = self._page(history.lfs_files(repo), _TREE_PAGE)
        self._json(page, headers=headers)

    def delete_lfs_files(self, repo_type: str, repo_id: str) -> None:
        """POST lfs-files/batch {deletions: {sha: [...], rewriteHistory}}: drop them from every ref."""
        repo = self._writable(repo_type, repo_id)
        deletions = self.body.json().get("deletions")
        shas = deletions.get("sha") if isinstance(deletions, dict) else None
        if not isinstance(shas, list) or not all(isinstance(sha, str) for sha in shas):
            raise HubError(400, "Body must be {deletions: {sha: [sha256, ...], rewriteHistory: true}}")
        if deletions.get("rewriteHistory") is False:
            raise HubError(422, "The local Hub deletes LFS files by rewriting history (rewriteHistory: true)")
        with self.hub.repos.lock(repo):
            gone = history.drop_lfs_files(repo, {sha.lower() for sha in shas})
            self.hub.repos.unlink(repo, gone)  # their bytes go too, unless another repo links them
        self._json({})

    def auth_check(self, repo_type: str, repo_id: str) -> None:
        repo = self._readable(repo_type, repo_id)
        self._check_gate(repo)
        self._json({})

    def _check_gate(self, repo: Repo) -> None:
        """A gated repo is readable by its namespace's user or org members only (anyone on an open Hub)."""
        if not repo.meta.gated or self.hub.auth.open:
            return
        what = f"{repo.meta.repo_type} {repo.meta.repo_id}"
        if self.user.name is None:
            raise HubError(
                401,
                f"Access to {what} is restricted: it is gated; authenticate with a token.",
                "GatedRepo",
            )
        if not self.user.member_of(repo.meta.repo_id.split("/")[0]):
            raise HubError(
                403,
                f"Access to {what} is restricted and you are not in the authorized list. "
                f"Visit {self._url(repo.meta.repo_type, repo.meta.repo_id)} to ask for access.",
                "GatedRepo",
            )

    def list_repos(self, repo_type: str) -> None:
        author, search = self.query.get("author"), (self.query.get("search") or "").lower()
        limit = int(self.query["limit"]) if self.query.get("limit", "").isdigit() else None
        out = []
        for repo in self.hub.repos.all(repo_type):
            if not self._may_see(repo):
                continue
            namespace = repo.meta.repo_id.split("/")[0]
            if (author and namespace != author) or (search and search not in repo.meta.repo_id.lower()):
                continue
            sha = repo.refs()["branches"].get("main")
            out.append(
                {
                    "_id": repo.meta.repo_id,
                    "id": repo.meta.repo_id,
                    "author": namespace,
                    "sha": sha,
                    "private": repo.meta.private,
                    "gated": repo.meta.gated,
                    "createdAt": repo.meta.created_at,
                    "lastModified": repo.commit(sha).date if sha else repo.meta.created_at,
                    "downloads": 0,
                    "likes": 0,
                    "tags": [],
                }
            )
            if limit is not None and len(out) >= limit:
                break
        self._json(out)

    def repo_storage(self, namespace: str | None) -> None:
        """The repos of a namespace with the storage each one uses (``hf repos ls``)."""
        if self.user.name is None or namespace is None:
            raise HubError(401, "You must be authenticated to list a namespace's repositories.")
        out = []
        for repo_type in REPO_TYPES:
            for repo in self.hub.repos.all(repo_type):
                if repo.meta.repo_id.split("/")[0].lower() != namespace.lower() or not self._may_see(repo):
                    continue
                head = repo.commit(repo.resolve("main"))
                out.append(
                    {
                        "id": repo.meta.repo_id,
                        "type": repo_type,
                        "updatedAt": head.date,
                        "visibility": "private" if repo.meta.private else "public",
                        "storage": sum(e.size for e in head.tree.files.values()),
                    }
                )
        total = sum(r["storage"] for r in out) or 1
        for r in out:
            r["storagePercent"] = 100 * r["storage"] / total
        page, headers = self._page(out, _TREE_PAGE)
        self._json(page, headers=headers)

    def _card_data(self, repo: Repo, commit: Commit) -> dict[str, Any] | None:
        entry = commit.tree.files.get("README.md")
        if entry is None or entry.size > _MAX_CARD_BYTES:
            return None
        try:
            return _card_metadata(self.hub.blobs.path(entry.sha256))
        except OSError:  # a missing blob must not break repo_info
            return None

    def repo_info(self, repo_type: str, repo_id: str, revision: str | None) -> None:
        repo = self._readable(repo_type, repo_id)
        repo_id = repo.meta.repo_id  # its own spelling: ids are case-insensitive
        sha = repo.resolve(revision or "main")
        commit = repo.commit(sha)
        blobs = _flag(self.query.get("blobs"))
        siblings = []
        for path, entry in sorted(commit.tree.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.oid)
                if entry.lfs:
                    sibling["lfs"] = {
                        "size": entry.size,
                        "sha256": entry.sha256,
                        "pointerSize": entry.pointer_size,
                    }
            siblings.append(sibling)
        card = self._card_data(repo, commit)
        tags = card.get("tags") if card else None
        info: dict[str, Any] = {
            "_id": repo_id,
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "lastModified": commit.date,
            "createdAt": repo.meta.created_at,
            "private": repo.meta.private,
            "gated": repo.meta.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [tags] if isinstance(tags, str) else list(tags or []),
            "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.tree.files.values()),
        }
        if card is not None:
            info["cardData"] = card
        if repo_type == "model":
            info["modelId"] = repo_id
            for key in ("library_name", "pipeline_tag"):
                if isinstance(card and card.get(key), str):
                    info[key] = card[key]  # type: ignore[index]
        self._json(info)

    # uploads --------------------------------------------------------------------------------------
    def preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._writable(repo_type, repo_id, pull_request=_flag(self.query.get("create_pr")))
        body = self.body.json()
        sha = repo.resolve(revision)
        tree = repo.commit(sha).tree
        patterns = cards.lfs_patterns(self._text(tree.files.get(".gitattributes")))
        gitignore = body.get("gitIgnore")
        if not isinstance(gitignore, str):
            gitignore = self._text(tree.files.get(".gitignore"))
        files = body.get("files")
        if not isinstance(files, list):
            raise HubError(400, "Body must be {'files': [{path, sample, size}, ...]}")
        out = []
        for item in files:
            if not isinstance(item, dict):
                raise HubError(400, "Each preupload entry must be an object {path, sample, size}")
            path = validate_path_in_repo(str(item.get("path", "")))
            sample = _b64decode(item.get("sample") or "", f"sample for '{path}'")
            size = _field(item, "size", int, f"preupload entry for '{path}'")
            if size is None or size < 0:
                raise HubError(400, f"Invalid preupload entry for '{path}': 'size' must be a number >= 0")
            result: dict[str, Any] = {
                "path": path,
                "uploadMode": cards.upload_mode(path, size, sample, patterns),
                "shouldIgnore": cards.ignored(path, gitignore),
            }
            if (existing := tree.files.get(path)) is not None:
                result["oid"] = existing.sha256 if existing.lfs else existing.oid
            out.append(result)
        self._json({"files": out, "commitOid": sha})

    def _text(self, entry: Entry | None) -> str:
        if entry is None or entry.size > 1024 * 1024:
            return ""
        return self.hub.blobs.read(entry.sha256).decode("utf-8", "replace")

    def lfs_batch(self, repo_type: str, repo_id: str) -> None:
        # the client's batch call says nothing of a pull request: uploading content is open to anyone
        # who may open one; only a member's commit (or a PR) can then make it part of the repo
        repo = self._writable(repo_type, repo_id, pull_request=True)
        body = self.body.json()
        if body.get("operation") != "upload":
            raise HubError(422, "Only the LFS 'upload' operation is supported; download files via /resolve/.")
        objects = []
        expires = int(time.time()) + _UPLOAD_URL_TTL
        for obj in _field(body, "objects", list) or []:
            oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
            if not isinstance(oid, str) or not _HEX64.match(oid.lower()) or type(size) is not int or size < 0:
                objects.append(
                    {
                        "oid": str(oid),
                        "size": size if isinstance(size, int) else 0,
                        "error": {"code": 422, "message": "Invalid oid or size"},
                    }
                )
                continue
            oid = oid.lower()
            if oid in self.hub.repos.links(repo) and self.hub.blobs.has(oid, size):
                objects.append({"oid": oid, "size": size})  # already stored for this repo: no upload action
                continue
            sig = self.hub.sign(repo.meta.repo_type, repo_id, oid, size, expires)
            query = urlencode({"size": size, "expires": expires, "sig": sig})
            href = f"{self.base_url}/{_URL_PREFIX[repo_type]}{repo_id}.git/info/lfs/objects/{oid}?{query}"
            objects.append(
                {"oid": oid, "size": size, "authenticated": True, "actions": {"upload": {"href": href}}}
            )
        payload = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
        self._send(200, payload, "application/vnd.git-lfs+json")

    def lfs_upload(self, repo_type: str, repo_id: str, oid: str) -> None:
        """PUT of one LFS object (basic transfer), authorised by the signed URL from the batch call."""
        try:
            size, expires = int(self.query.get("size", "")), int(self.query.get("expires", ""))
        except ValueError as exc:
            raise HubError(400, "Upload URL lacks size/expires; ask the LFS batch endpoint for one") from exc
        if not _HEX64.match(oid):
            raise HubError(400, f"Invalid LFS object id '{oid}': expected 64 lowercase hex digits")
        expected = self.hub.sign(repo_type, repo_id, oid, size, expires)
        if not hmac.compare_digest(expected, self.query.get("sig", "")) or expires < time.time():
            raise HubError(403, "Invalid or expired upload URL; ask the LFS batch endpoint for a new one")
        repo = self.hub.repos.get(repo_type, repo_id)
        if repo is None:
            raise repo_not_found(repo_id)
        if self.body.length is not None and self.body.length != size:
            raise HubError(400, f"Content-Length {self.body.length} does not match the object size {size}")
        self.hub.blobs.receive(self.body.readinto, size, oid)
        self.hub.repos.link(repo, {oid})
        self._json({})

    def commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        create_pr = _flag(self.query.get("create_pr"))
        repo = self._writable(repo_type, repo_id, pull_request=create_pr)
        assert self.user.name is not None
        header, ops = self._parse_commit_payload(repo)
        summary = (_field(header, "summary", str, "commit header") or "").strip()
        if not summary:
            raise HubError(400, "The commit summary (message) must not be empty")
        description = _field(header, "description", str, "commit header") or ""
        parent = _field(header, "parentCommit", str, "commit header")
        if parent is not None and not _COMMIT_ID.match(parent.lower()):
            raise HubError(400, f"Invalid parentCommit '{parent}': expected a commit id (7 to 40 hex digits)")
        with self.hub.repos.lock(repo):
            refs = repo.refs()
            kind, name = self._commit_target(repo, refs, revision, create_pr)
            base = refs[kind][name]
            if parent is not None and create_pr:
                base = repo.resolve(parent.lower())
            elif parent is not None:
                try:  # a short id must name exactly one commit
                    parent = repo.resolve(parent.lower())
                except HubError:
                    parent = parent.lower()  # no such commit: never the current one
                if base != parent:
                    raise HubError(
                        412,
                        "The branch was updated since you opened this page. Please refresh and try again. "
                        f"({revision} is at {base}, not at the parent commit {parent})",
                    )
            tree = repo.write_tree(repo.commit(base).tree, ops)
            new_id = repo.write_commit([base], summary, description, self.user.name, tree)
            if create_pr:
                kind, name = "prs", str(max((int(n) for n in refs["prs"]), default=0) + 1)
            refs[kind][name] = new_id
            repo.write_refs(refs)
        url = self._url(repo_type, repo_id)
        self._json(
            {
                "success": True,
                "commitOid": new_id,
                "commitUrl": f"{url}/commit/{new_id}",
                "commitMessage": summary,
                "hookOutput": "",
                "pullRequestUrl": f"{url}/discussions/{name}" if create_pr else None,
            }
        )

    def _parse_commit_payload(self, repo: Repo) -> tuple[dict[str, Any], list[tuple[str, str, Entry | None]]]:
        """Read the NDJSON commit body line by line, storing regular files' contents as they come."""
        if (
            "json" in (self.headers.get("Content-Type") or "")
            and "ndjson" not in self.headers["Content-Type"]
        ):
            raise HubError(400, "The commit payload must be NDJSON (Content-Type: application/x-ndjson)")
        header: dict[str, Any] | None = None
        ops: list[tuple[str, str, Entry | None]] = []
        for number, line in enumerate(self.body.lines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if not isinstance(value, dict):
                    raise TypeError
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise HubError(
                    400, f"Line {number} of the commit payload is not a {{key, value}} object"
                ) from exc
            if key == "header":
                header = value
                continue
            if header is None:
                raise HubError(400, "The commit payload must start with a 'header' line")
            raw_path = str(value.get("path", ""))
            path = validate_path_in_repo(raw_path.strip("/") if key == "deletedFolder" else raw_path)
            if key == "file":
                content, encoding = value.get("content", ""), value.get("encoding", "base64")
                if encoding == "base64":
                    data = _b64decode(content, f"content for '{path}'")
                elif encoding in ("utf-8", "utf8") and isinstance(content, str):
                    data = content.encode()
                else:
                    raise HubError(400, f"Invalid content for '{path}': expected a base64 or utf-8 string")
                ops.append(("add", path, make_entry(self.hub.blobs.put_bytes(data), len(data), False, data)))
            elif key == "lfsFile":
                oid = str(value.get("oid", "")).lower()
                size = _field(value, "size", int, f"lfsFile entry for '{path}'")
                if not _HEX64.match(oid):
                    raise HubError(400, f"Invalid LFS oid for '{path}': expected 64 hex digits (a sha256)")
                linked = oid in self.hub.repos.links(repo) and self.hub.blobs.has(oid, size)
                if value.get("algo", "sha256") != "sha256" or not linked:
                    raise HubError(
                        400,
                        f"LFS object {oid} for '{path}' was not uploaded (or has another size); "
                        "upload it through the LFS batch endpoint before committing.",
                    )
                if size is None:
                    size = self.hub.blobs.path(oid).stat().st_size
                ops.append(("add", path, make_entry(oid, int(size), True)))
            elif key in ("deletedFile", "deletedFolder"):
                ops.append((key, path, None))
            else:
                raise HubError(400, f"Unknown operation '{key}' on line {number} of the commit payload")
        if header is None:
            raise HubError(400, "The commit payload has no 'header' line")
        self.hub.repos.link(repo, {e.sha256 for op, _, e in ops if e is not None and not e.lfs})
        return header, ops

    def _commit_target(
        self, repo: Repo, refs: dict[str, dict[str, str]], revision: str, create_pr: bool
    ) -> tuple[str, str]:
        """Which ref a commit moves: a branch or an existing ``refs/pr/N``."""
        name = revision[len("refs/heads/") :] if revision.startswith("refs/heads/") else revision
        if name in refs["branches"]:
            return "branches", name
        if not create_pr and revision.startswith("refs/pr/") and revision[len("refs/pr/") :] in refs["prs"]:
            return "prs", revision[len("refs/pr/") :]
        repo.resolve(revision)  # RevisionNotFound if it is nothing at all
        if create_pr:  # a pull request targets a branch: against anything else, as the Hub answers
            raise revision_not_found(revision)
        raise HubError(
            400, f"Revision '{revision}' is not a branch: commits go to a branch or a refs/pr/N ref"
        )

    # reads ----------------------------------------------------------------------------------------
    def _next_link(self, cursor: int) -> dict[str, str]:
        pairs = [(k, v) for k, values in self.query_all.items() if k != "cursor" for v in values]
        query = urlencode([*pairs, ("cursor", str(cursor))])
        return {"Link": f'<{self.base_url}{self.raw_path}?{query}>; rel="next"'}  # raw_path is still encoded

    def _page(self, items: Iterable[Any], default: int) -> tuple[list[Any], dict[str, str]]:
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

    def _expand(self, repo: Repo, head: str, entries: list[dict[str, Any]]) -> None:
        last = repo.last_commits(head, [e["path"] for e in entries])
        for e in entries:
            e["lastCommit"] = _commit_ref_json(last[e["path"]])

    def tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._readable(repo_type, repo_id)
        sha = repo.resolve(revision)
        tree = repo.commit(sha).tree
        path = path.strip("/")
        if path and path not in tree.dirs:
            raise HubError(
                404, f"Folder '{path}' does not exist at {revision}", "EntryNotFound", {"X-Repo-Commit": sha}
            )
        recursive, expand = _flag(self.query.get("recursive")), _flag(self.query.get("expand"))
        folders, files = [], []
        for p, node in tree.walk(path, recursive):  # only the folders listed are read
            if isinstance(node, str):
                folders.append({"type": "directory", "oid": node, "size": 0, "path": p})
            else:
                files.append(_file_json(p, node))
        if recursive:
            entries = sorted(folders + files, key=lambda e: e["path"])
        else:
            entries = sorted(folders, key=lambda e: e["path"]) + sorted(files, key=lambda e: e["path"])
        page, headers = self._page(entries, _TREE_PAGE_EXPANDED if expand else _TREE_PAGE)
        if expand:
            self._expand(repo, sha, page)
        self._json(page, headers=headers)

    def paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._readable(repo_type, repo_id)
        raw = self.body.all(_MAX_JSON_BODY)
        if "json" in (self.headers.get("Content-Type") or ""):
            try:
                data = json.loads(raw or b"{}")
            except json.JSONDecodeError as exc:
                raise HubError(400, f"Request body is not valid JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise HubError(400, "Request body must be a JSON object {paths, expand}")
            paths, expand = data.get("paths") or [], bool(data.get("expand"))
        else:
            form = parse_qs(raw.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), _flag((form.get("expand") or [""])[-1])
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list):
            raise HubError(400, "'paths' must be a list of paths")
        sha = repo.resolve(revision)
        tree = repo.commit(sha).tree
        out = []
        for path in dict.fromkeys(str(p).strip("/") for p in paths):
            if path in tree.files:
                out.append(_file_json(path, tree.files[path]))
            elif path and path in tree.dirs:
                out.append({"type": "directory", "oid": tree.dirs[path], "size": 0, "path": path})
        if expand:
            self._expand(repo, sha, out)
        self._json(out)

    def refs(self, repo_type: str, repo_id: str) -> None:
        repo = self._readable(repo_type, repo_id)
        refs = repo.refs()
        out: dict[str, Any] = {
            "branches": [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c}
                for n, c in sorted(refs["branches"].items())
            ],
            "converts": [],
            "tags": [
                {"name": n, "ref": f"refs/tags/{n}", "targetCommit": c}
                for n, c in sorted(refs["tags"].items())
            ],
        }
        if _flag(self.query.get("include_prs")):
            out["pullRequests"] = [
                {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": c}
                for n, c in sorted(refs["prs"].items(), key=lambda kv: int(kv[0]))
            ]
        self._json(out)

    def commits(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._readable(repo_type, repo_id)
        page, headers = self._page(repo.history(repo.resolve(revision)), _COMMITS_PAGE)
        formatted = "formatted" in self.query_all.get("expand[]", [])
        out = []
        for c in page:
            item: dict[str, Any] = {
                "id": c.id,
                "title": c.title,
                "message": c.message,
                "authors": [{"user": c.author}],
                "date": c.date,
            }
            if formatted:
                item["formatted"] = {"title": html.escape(c.title), "message": html.escape(c.message)}
            out.append(item)
        self._json(out, headers=headers)

    # refs -----------------------------------------------------------------------------------------
    @staticmethod
    def _check_ref_name(name: str, what: str) -> str:
        bad = (
            not name
            or name.startswith(("refs/", "/", "-"))
            or name.endswith(("/", ".lock", "."))
            or ".." in name
            or "//" in name
            or any(c.isspace() or c in "~^:?*[\\" for c in name)
            or (len(name) == 40 and all(c in "0123456789abcdef" for c in name))
        )
        if bad:
            raise HubError(400, f"Invalid {what} name '{name}'")
        return name

    def branch(self, repo_type: str, repo_id: str, name: str) -> None:
        repo = self._writable(repo_type, repo_id)
        body = self.body.json() if self.method == "POST" else {}
        with self.hub.repos.lock(repo):
            refs = repo.refs()
            if self.method == "DELETE":
                if name == "main":
                    raise HubError(403, "Cannot delete refs/heads/main: it is the default branch")
                if refs["branches"].pop(name, None) is None:
                    raise revision_not_found(name)
            else:
                self._check_ref_name(name, "branch")
                if name in refs["branches"]:
                    raise HubError(409, f"Reference refs/heads/{name} already exists")
                refs["branches"][name] = repo.resolve(_field(body, "startingPoint", str) or "main")
            repo.write_refs(refs)
        self._json({})

    def tag(self, repo_type: str, repo_id: str, target: str) -> None:
        """POST /tag/{revision} {"tag": name} creates a tag; DELETE /tag/{name} removes one."""
        repo = self._writable(repo_type, repo_id)
        body = self.body.json() if self.method == "POST" else {}
        with self.hub.repos.lock(repo):
            refs = repo.refs()
            if self.method == "DELETE":
                if refs["tags"].pop(target, None) is None:
                    raise revision_not_found(target)
            else:
                commit_id = repo.resolve(target)  # RevisionNotFound first, as on the Hub
                tag = self._check_ref_name(_field(body, "tag", str) or "", "tag")
                if tag in refs["tags"]:
                    raise HubError(409, f"Reference refs/tags/{tag} already exists")
                refs["tags"][tag] = commit_id
            repo.write_refs(refs)
        self._json({})

    # downloads ------------------------------------------------------------------------------------
    def resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._readable(repo_type, repo_id)
        self._check_gate(repo)
        sha = repo.resolve(revision)
        entry = repo.commit(sha).tree.files.get(path)
        if entry is None:
            raise HubError(
                404, f"Entry not found: {path} at {revision}", "EntryNotFound", {"X-Repo-Commit": sha}
            )
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{entry.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        }
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        start, end, status = 0, entry.size - 1, 200
        if (spec := self.headers.get("Range")) and "," not in spec:
            start, end = self._parse_range(spec, entry.size, headers)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        length = max(0, end - start + 1)
        try:
            blob = self.hub.blobs.open(entry.sha256)
        except FileNotFoundError as exc:  # an LFS file permanently deleted: only an old commit names it
            raise HubError(
                404,
                f"Entry not found: {path} at {revision} (its content was permanently deleted)",
                "EntryNotFound",
                {"X-Repo-Commit": sha},
            ) from exc
        with blob:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.sent_headers = True
            if self.method == "GET" and length:
                self.connection.sendfile(blob, offset=start, count=length)

    @staticmethod
    def _parse_range(spec: str, size: int, headers: dict[str, str]) -> tuple[int, int]:
        unit, _, rng = spec.partition("=")
        first, _, last = rng.strip().partition("-")
        try:
            if unit.strip() != "bytes":
                raise ValueError
            if first:
                start, end = int(first), int(last) if last else size - 1
            else:
                start, end = max(0, size - int(last)), size - 1
        except ValueError as exc:
            raise HubError(
                416, f"Invalid Range header: {spec}", headers={**headers, "Content-Range": f"bytes */{size}"}
            ) from exc
        if start >= size or end < start:
            raise HubError(
                416,
                f"Range not satisfiable: {spec} (size {size})",
                headers={"Content-Range": f"bytes */{size}"},
            )
        return start, min(end, size - 1)

    def validate_yaml(self) -> None:
        body = self.body.json(_MAX_CARD_BODY)
        meta, errors = cards.front_matter(str(body.get("content") or ""))
        if meta:
            errors += cards.validate_metadata(meta, str(body.get("repoType") or "model"))
        warnings = [] if meta or errors else [{"message": "Empty or missing yaml metadata in repo card"}]
        if errors and "text/plain" in (self.headers.get("Accept") or ""):  # RepoCard.validate() asks so
            self._send(400, "\n".join(f"- Error: {m}" for m in errors).encode(), "text/plain; charset=utf-8")
        elif errors:
            self._json(
                {
                    "error": "Invalid metadata in README.md",
                    "errors": [{"message": m} for m in errors],
                    "warnings": warnings,
                },
                400,
            )
        else:
            self._json({"errors": [], "warnings": warnings})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: LocalHub


class _Server6(_Server):
    address_family = socket.AF_INET6


class LocalHub:
    """A Hugging Face Hub-compatible server storing repos under ``root``.

    ``start()`` serves from a background thread (tests, notebooks); ``serve_forever()`` blocks
    (the CLI). With no ``tokens`` the server is open: every caller is user ``hubkit`` with write
    access. With tokens, anonymous callers may only read public repos, and a user writes (and sees
    private repos) only in its own namespace and in the ``orgs`` (name -> member users) it is in.
    """

    def __init__(
        self,
        root: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Sequence[Token] = (),
        orgs: Mapping[str, Iterable[str]] | None = None,
    ):
        self.root = Path(root)
        self.host = host
        self.port = port
        self.auth = Authenticator(tokens, orgs)
        self._secret = secrets.token_bytes(32)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock_file: BinaryIO | None = None

    @property
    def endpoint(self) -> str:
        """The URL to put in ``HF_ENDPOINT`` (with the real port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def sign(self, repo_type: str, repo_id: str, oid: str, size: int, expires: int) -> str:
        """Signature of an LFS upload URL: the PUT carries no token, like a presigned S3 URL."""
        message = f"{repo_type}/{repo_id}/{oid}/{size}/{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _open(self) -> None:
        if self._server is not None:
            raise HubkitError(f"The local Hub on {self.root} is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_root()
        try:
            tmp = self.root / "tmp"
            shutil.rmtree(tmp, ignore_errors=True)  # partial uploads and half-built repos of a crashed run
            tmp.mkdir()
            self.blobs = BlobStore(self.root / "objects", tmp)
            self.repos = RepoStore(self.root / "repos", tmp, self.blobs)
            for leftover in self.repos.repair():
                logger.warning(
                    "Removed %s: a repo folder without metadata or refs (an interrupted write)", leftover
                )
            for upgraded in self.repos.upgrade():
                logger.info("Converted %s to tree objects (the storage of this hubkit version)", upgraded)
            server_class = _Server6 if ":" in self.host else _Server
            try:
                server = server_class((self.host, self.port), _Handler)
            except OSError as exc:
                raise HubkitError(f"Cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        except BaseException:
            self._unlock_root()
            raise
        server.hub = self
        self.port = server.server_address[1]
        self._server = server

    def _lock_root(self) -> None:
        """One server per root: two would interleave their writes to the same refs."""
        import fcntl

        self._lock_file = open(self.root / ".lock", "wb")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._unlock_root()
            raise HubkitError(f"{self.root} is already served by another local Hub process") from exc

    def _unlock_root(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def start(self) -> LocalHub:
        """Serve from a daemon thread and return at once; ``endpoint`` is then final."""
        self._open()
        assert self._server is not None
        self._thread = threading.Thread(target=self._server.serve_forever, name="hubkit-hub", daemon=True)
        self._thread.start()
        logger.info("Local Hub serving %s at %s", self.root, self.endpoint)
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C) or ``stop()`` from another thread."""
        self._open()
        assert self._server is not None
        logger.info("Local Hub serving %s at %s (set HF_ENDPOINT to it)", self.root, self.endpoint)
        try:
            self._server.serve_forever()
        finally:
            self._close()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        if self._thread is not None:  # with serve_forever(), its own thread closes the server
            self._thread.join()
            self._thread = None
            self._close()

    def _close(self) -> None:
        if self._server is not None:
            self._server.server_close()
            self._server = None
        self._unlock_root()

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
