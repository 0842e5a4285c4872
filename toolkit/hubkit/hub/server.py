"""The local Hub: the Hugging Face Hub HTTP API that the stock clients use, served from a folder.

huggingface_hub, datasets, transformers and peft talk to it unmodified once ``HF_ENDPOINT``
points here and Xet is off (``HF_HUB_DISABLE_XET=1``): uploads use the plain LFS protocol.
Standard library only, so that importing it never imports the HF clients. ``LocalHub`` owns the
storage, the tokens and the listening socket; ``request.py`` parses each request and ``routes/``
answers it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from ..errors import HubkitError
from .auth import Authenticator, Token
from .request import Request, Server, Server6
from .routes import route
from .storage import BlobStore, RepoStore

logger = logging.getLogger(__name__)


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
        self._server: Server | None = None
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
            server_class = Server6 if ":" in self.host else Server
            try:
                server = server_class((self.host, self.port), Request)
            except OSError as exc:
                raise HubkitError(f"Cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        except BaseException:
            self._unlock_root()
            raise
        server.hub, server.router = self, route
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
