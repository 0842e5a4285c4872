"""On-disk storage of the local Hub: a content-addressed blob store and versioned repos.

Layout under the root folder::

    objects/ab/cdef...      file contents, named by sha256 (regular and LFS files alike)
    repos/{type}/{ns}/{name}/
        repo.json           visibility and creation date
        refs.json           branches, tags and pull-request refs -> commit id
        commits/{id}.json   immutable commit objects (parents, message, author, date, full tree)
    tmp/                    partial uploads and half-built repos; emptied on start

Every file is written to a temporary name, fsynced and moved into place with ``os.replace``,
and ``refs.json`` is replaced last, so a commit is visible whole or not at all, even if the
process is killed in the middle of one. Blobs and commit objects that a crash leaves without
a ref are harmless: nothing points at them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

CHUNK = 1024 * 1024
REPO_TYPES = ("model", "dataset", "space", "kernel")
_NAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{7,40}$")
_PR_RE = re.compile(r"^refs/pr/(\d+)$")


class HubError(Exception):
    """An error answered to the client: HTTP status, message, and the Hub's ``X-Error-Code``."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def repo_not_found(repo_id: str) -> HubError:
    # the Hub's exact text: the client's own message already names the URL, and then omits this one
    return HubError(404, "Repository not found", "RepoNotFound")


def revision_not_found(revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


def now_iso() -> str:
    """The current UTC time in the Hub's date format (parsed by huggingface_hub's parse_datetime)."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob: what the Hub reports as a regular file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file that stands in git for an LFS file; its blob oid is the file's oid."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def validate_name(part: str, what: str) -> str:
    if not _NAME_RE.match(part) or ".." in part or "--" in part or part.endswith(".git"):
        raise HubError(400, f"Invalid {what} '{part}': use letters, digits, '-', '_' and '.' (at most 96).")
    return part


def validate_path_in_repo(path: str) -> str:
    """Reject paths that are absolute, escape the repo or touch git internals (422, as the Hub).

    Like the Hub, a path may not start with a Windows-style ``..\\`` either; backslashes deeper in a
    path are plain characters here (the clients refuse to download such names outside their folder).
    """
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or any(p in ("", ".", "..", ".git") for p in parts)
        or re.split(r"[/\\]", path)[0] in (".", "..")
        or "\0" in path
    ):
        raise HubError(422, f"Invalid path in repo: '{path}'")
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, tmp_dir: Path) -> None:
    """Write ``data`` to ``path`` so that readers (and a crash) see the old file or the new one.

    The temporary file is made in ``tmp_dir`` (same file system), which is emptied on start, so a
    crash leaves no stray files next to the real ones.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{path.name}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def dump_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class BlobStore:
    """File contents by sha256. Large uploads are streamed to ``tmp/`` and moved in once verified."""

    def __init__(self, root: Path, tmp: Path):
        self.root = root
        self.tmp = tmp
        root.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def has(self, sha256: str, size: int | None = None) -> bool:
        if not _SHA256_RE.match(sha256):
            return False
        try:
            st = self.path(sha256).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has(sha, len(data)):
            atomic_write(self.path(sha), data, self.tmp)
        return sha

    def receive(self, readinto: Callable[[memoryview], int], size: int, sha256: str) -> None:
        """Stream ``size`` bytes from ``readinto`` into the store, chunk by chunk, checking the sha256.

        The partial file lives in ``tmp/`` and is removed on any failure; the object appears under
        its name only once complete, verified and fsynced.
        """
        part = self.tmp / f"upload-{sha256[:16]}-{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        received = 0
        buffer = memoryview(bytearray(CHUNK))
        try:
            with open(part, "wb") as f:
                while received < size:
                    n = readinto(buffer[: min(CHUNK, size - received)])
                    if not n:
                        break
                    digest.update(buffer[:n])
                    f.write(buffer[:n])
                    received += n
                f.flush()
                os.fsync(f.fileno())
            if received != size:
                raise HubError(400, f"Upload of {sha256} ended after {received} of {size} bytes.")
            if digest.hexdigest() != sha256:
                raise HubError(400, f"sha256 mismatch: expected {sha256}, received {digest.hexdigest()}.")
            target = self.path(sha256)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, target)
            _fsync_dir(target.parent)
        finally:
            part.unlink(missing_ok=True)

    def open(self, sha256: str):
        return open(self.path(sha256), "rb")

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()


@dataclass(frozen=True)
class Entry:
    """One file in a commit's tree."""

    sha256: str
    size: int
    oid: str  # git blob oid: of the content, or of the LFS pointer for LFS files
    lfs: bool

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "oid": self.oid, "lfs": self.lfs}

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))


def make_entry(sha256: str, size: int, lfs: bool, content: bytes | None = None) -> Entry:
    oid = git_blob_oid(lfs_pointer(sha256, size) if lfs else content if content is not None else b"")
    return Entry(sha256, size, oid, lfs)


class Tree:
    """A commit's files plus every folder, each with a git tree oid (what the Hub lists for folders)."""

    def __init__(self, files: dict[str, Entry]):
        self.files = files
        children: dict[str, dict[str, tuple[str, str]]] = {"": {}}
        for path in files:
            parent = ""
            for part in PurePosixPath(path).parts[:-1]:
                here = f"{parent}/{part}" if parent else part
                children.setdefault(here, {})
                parent = here
        self.dirs: dict[str, str] = {}
        for path, entry in files.items():
            parent, _, name = path.rpartition("/")
            children[parent][name] = ("100644", entry.oid)
        for folder in sorted(children, key=lambda d: -(d.count("/") + 1) if d else 0):  # deepest first
            entries = children[folder]
            # git orders tree entries by name, comparing folders as if their name ended in "/"
            ordered = sorted(entries.items(), key=lambda kv: kv[0] + ("/" if kv[1][0] == "40000" else ""))
            body = b"".join(
                f"{mode} {name}".encode() + b"\0" + bytes.fromhex(oid) for name, (mode, oid) in ordered
            )
            oid = hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()
            self.dirs[folder] = oid
            if folder:
                parent, _, name = folder.rpartition("/")
                children[parent][name] = ("40000", oid)


@dataclass
class Commit:
    id: str
    parents: list[str]
    title: str
    message: str
    author: str
    date: str
    tree: Tree


@dataclass
class RepoMeta:
    repo_type: str
    repo_id: str
    private: bool
    gated: str | bool
    created_at: str


class Repo:
    """One repository: its metadata, refs and commits, all in one folder."""

    def __init__(self, store: RepoStore, path: Path, meta: RepoMeta):
        self.store = store
        self.path = path
        self.meta = meta

    # refs -----------------------------------------------------------------------------------------
    def refs(self) -> dict[str, dict[str, str]]:
        data = json.loads((self.path / "refs.json").read_text())
        return {k: data.get(k, {}) for k in ("branches", "tags", "prs")}

    def write_refs(self, refs: dict[str, dict[str, str]]) -> None:
        """Replace all refs at once: the last, atomic step of every commit and ref change."""
        atomic_write(self.path / "refs.json", dump_json(refs), self.store.tmp)

    def resolve(self, revision: str) -> str:
        """Commit id for a branch, tag, ``refs/heads|tags/...``, ``refs/pr/N`` or (short) commit id."""
        refs = self.refs()
        if revision in refs["branches"]:
            return refs["branches"][revision]
        if revision in refs["tags"]:
            return refs["tags"][revision]
        for prefix, kind in (("refs/heads/", "branches"), ("refs/tags/", "tags")):
            if revision.startswith(prefix) and revision[len(prefix) :] in refs[kind]:
                return refs[kind][revision[len(prefix) :]]
        if m := _PR_RE.match(revision):
            if m[1] in refs["prs"]:
                return refs["prs"][m[1]]
        if _COMMIT_RE.match(revision):
            if len(revision) == 40:
                if (self.path / "commits" / f"{revision}.json").exists():
                    return revision
            else:
                found = [p.stem for p in (self.path / "commits").glob(f"{revision}*.json")]
                if len(found) == 1:
                    return found[0]
        raise revision_not_found(revision)

    # commits --------------------------------------------------------------------------------------
    def commit(self, commit_id: str) -> Commit:
        return self.store.load_commit(self.path, commit_id)

    def history(self, commit_id: str) -> Iterator[Commit]:
        """Commits from ``commit_id`` back to the first one, newest first (first parents only)."""
        current: str | None = commit_id
        while current:
            commit = self.commit(current)
            yield commit
            current = commit.parents[0] if commit.parents else None

    def write_commit(
        self,
        parents: list[str],
        title: str,
        message: str,
        author: str,
        files: dict[str, Entry],
        date: str | None = None,
    ) -> str:
        """Store an immutable commit object and return its id (sha1 of its content); moves no ref.

        ``date`` is given only when history is rewritten (the rewritten commit keeps its date).
        """
        body = {
            "parents": parents,
            "title": title,
            "message": message,
            "author": author,
            "date": date or now_iso(),
            "tree": {path: files[path].to_json() for path in sorted(files)},
        }
        data = dump_json(body)
        commit_id = hashlib.sha1(data).hexdigest()
        atomic_write(self.path / "commits" / f"{commit_id}.json", data, self.store.tmp)
        return commit_id

    def last_commits(self, head: str, paths: list[str]) -> dict[str, Commit]:
        """For each path (file or folder), the newest commit that changed it, walking from ``head``."""
        todo = set(paths)
        found: dict[str, Commit] = {}
        for commit in self.history(head):
            if not todo:
                break
            parent = self.commit(commit.parents[0]).tree if commit.parents else Tree({})
            for path in list(todo):
                now = commit.tree.files.get(path) or commit.tree.dirs.get(path)
                before = parent.files.get(path) or parent.dirs.get(path)
                if now != before or not commit.parents:
                    found[path] = commit
                    todo.discard(path)
        return found


class RepoStore:
    """All repos under ``root/repos``; repo creation, deletion and per-repo commit locks."""

    def __init__(self, root: Path, tmp: Path, blobs: BlobStore):
        self.root = root
        self.tmp = tmp
        self.blobs = blobs
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._repo_locks: dict[Path, threading.Lock] = {}
        self._commits: OrderedDict[tuple[Path, str], Commit] = OrderedDict()

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        namespace, name = repo_id.split("/")
        return self.root / repo_type / namespace / name

    def lock(self, repo: Repo) -> threading.Lock:
        """The lock that serialises commits and ref changes on one repo."""
        with self._lock:
            return self._repo_locks.setdefault(repo.path, threading.Lock())

    def get(self, repo_type: str, repo_id: str) -> Repo | None:
        if repo_type not in REPO_TYPES or repo_id.count("/") != 1:
            return None
        namespace, name = repo_id.split("/")
        if not (_NAME_RE.match(namespace) and _NAME_RE.match(name)):
            return None
        path = self.repo_dir(repo_type, repo_id)
        if not path.exists():  # repo ids are case-insensitive, as on the Hub
            path = self._casefold_dir(repo_type, namespace, name) or path
        try:
            data = json.loads((path / "repo.json").read_text())
        except FileNotFoundError:
            return None
        repo_id = f"{path.parent.name}/{path.name}"
        meta = RepoMeta(repo_type, repo_id, data["private"], data.get("gated", False), data["created_at"])
        return Repo(self, path, meta)

    def _casefold_dir(self, repo_type: str, namespace: str, name: str) -> Path | None:
        """The folder of the repo whose id equals ``namespace/name`` up to case, if any."""
        try:
            for space in (self.root / repo_type).iterdir():
                if space.name.lower() == namespace.lower():
                    for folder in space.iterdir():
                        if folder.name.lower() == name.lower():
                            return folder
        except FileNotFoundError:  # no repo of this type yet, or one deleted meanwhile
            pass
        return None

    # moved repos ----------------------------------------------------------------------------------
    def _redirects(self) -> dict[str, str]:
        try:
            return json.loads((self.root / "redirects.json").read_text())
        except FileNotFoundError:
            return {}

    def redirect(self, repo_type: str, repo_id: str) -> str | None:
        """Where a repo moved by :meth:`move` lives now (old names keep working, as on the Hub)."""
        return self._redirects().get(f"{repo_type}/{repo_id.lower()}")

    def move(self, repo: Repo, new_id: str) -> None:
        """Rename a repo in one rename of its folder; its old id then redirects to the new one."""
        namespace, name = new_id.split("/")
        validate_name(namespace, "namespace")
        validate_name(name, "repo name")
        repo_type, old_id = repo.meta.repo_type, repo.meta.repo_id
        with self.lock(repo), self._lock:
            existing = self._casefold_dir(repo_type, namespace, name)
            if existing is not None and existing != repo.path:
                raise HubError(409, f"A {repo_type} repository called {new_id} already exists")
            target = self.repo_dir(repo_type, new_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(repo.path, target)
            _fsync_dir(target.parent)
            _fsync_dir(repo.path.parent)
            self._repo_locks.pop(repo.path, None)
            self._commits = OrderedDict((k, v) for k, v in self._commits.items() if k[0] != repo.path)
            redirects = {k: v for k, v in self._redirects().items() if k != f"{repo_type}/{new_id.lower()}"}
            for key, value in redirects.items():  # earlier names of this repo follow it
                if key.startswith(f"{repo_type}/") and value.lower() == old_id.lower():
                    redirects[key] = new_id
            if old_id.lower() != new_id.lower():
                redirects[f"{repo_type}/{old_id.lower()}"] = new_id
            atomic_write(self.root / "redirects.json", dump_json(redirects), self.tmp)
            repo.path, repo.meta.repo_id = target, new_id

    def all(self, repo_type: str) -> Iterator[Repo]:
        for meta_file in sorted((self.root / repo_type).glob("*/*/repo.json")):
            repo = self.get(repo_type, f"{meta_file.parent.parent.name}/{meta_file.parent.name}")
            if repo is not None:
                yield repo

    def save_meta(self, repo: Repo) -> None:
        meta = {"private": repo.meta.private, "gated": repo.meta.gated, "created_at": repo.meta.created_at}
        atomic_write(repo.path / "repo.json", dump_json(meta), self.tmp)

    def create(self, repo_type: str, repo_id: str, private: bool, author: str, gitattributes: bytes) -> Repo:
        """Create a repo with an initial commit; it is built in ``tmp/`` and appears in one rename."""
        namespace, name = repo_id.split("/")
        validate_name(namespace, "namespace")
        validate_name(name, "repo name")
        with self._lock:
            target = self.repo_dir(repo_type, repo_id)
            if target.exists() or self._casefold_dir(repo_type, namespace, name):
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}")
            staging = self.tmp / f"repo-{uuid.uuid4().hex}"
            (staging / "commits").mkdir(parents=True)
            meta = RepoMeta(repo_type, repo_id, private, False, now_iso())
            repo = Repo(self, staging, meta)
            self.save_meta(repo)
            sha = self.blobs.put_bytes(gitattributes)
            files = {".gitattributes": make_entry(sha, len(gitattributes), False, gitattributes)}
            first = repo.write_commit([], "initial commit", "", author, files)
            repo.write_refs({"branches": {"main": first}, "tags": {}, "prs": {}})
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, target)
            _fsync_dir(target.parent)
            repo.path = target
            return repo

    def delete(self, repo: Repo) -> None:
        """Move the repo out of sight in one rename, then remove it."""
        with self._lock:
            trash = self.tmp / f"deleted-{uuid.uuid4().hex}"
            os.rename(repo.path, trash)
            _fsync_dir(repo.path.parent)
            self._repo_locks.pop(repo.path, None)
            self._commits = OrderedDict((k, v) for k, v in self._commits.items() if k[0] != repo.path)
        shutil.rmtree(trash, ignore_errors=True)

    def load_commit(self, repo_path: Path, commit_id: str) -> Commit:
        key = (repo_path, commit_id)
        with self._lock:
            if key in self._commits:
                self._commits.move_to_end(key)
                return self._commits[key]
        data = json.loads((repo_path / "commits" / f"{commit_id}.json").read_text())
        files = {path: Entry(e["sha256"], e["size"], e["oid"], e["lfs"]) for path, e in data["tree"].items()}
        commit = Commit(
            commit_id,
            data["parents"],
            data["title"],
            data["message"],
            data["author"],
            data["date"],
            Tree(files),
        )
        with self._lock:
            self._commits[key] = commit
            while len(self._commits) > 256:
                self._commits.popitem(last=False)
        return commit
