"""On-disk storage of the local Hub: a content-addressed blob store and versioned repos.

Layout under the root folder::

    objects/ab/cdef...      file contents, named by sha256 (regular and LFS files alike)
    repos/{type}/{ns}/{name}/
        repo.json           visibility and creation date
        refs.json           branches, tags and pull-request refs -> commit id
        commits/{id}.json   immutable commit objects (parents, message, author, date, root tree oid)
        trees/ab/cdef...    one folder's files and sub-folders, named by its git tree oid; shared
                            by every commit holding that folder, so a commit stores only the
                            folders on the paths it changed
        links.txt           sha256 of every blob this repo uploaded or committed: the only blobs
                            its commits may point at, and what keeps a blob alive
    tmp/                    partial uploads and half-built repos; emptied on start

Every file is written to a temporary name, fsynced and moved into place with ``os.replace``,
and ``refs.json`` is replaced last, so a commit is visible whole or not at all, even if the
process is killed in the middle of one. Blobs, trees and commit objects that a crash leaves
without a ref are harmless: nothing points at them. Deleting a repo removes the blobs that no
other repo links.
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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK = 1024 * 1024
TREE_CACHE_ENTRIES = 200_000  # folder entries kept parsed in memory, across repos
REPO_TYPES = ("model", "dataset", "space", "kernel")
_NAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{7,40}$")
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
        if not SHA256_RE.match(sha256):
            return False
        try:
            st = self.path(sha256).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` (or refresh the mtime of its blob: a collection then leaves it alone)."""
        sha = hashlib.sha256(data).hexdigest()
        try:
            if self.path(sha).stat().st_size == len(data):
                os.utime(self.path(sha))
                return sha
        except FileNotFoundError:
            pass
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


def tree_oid(children: dict[str, Entry | str]) -> str:
    """The git tree oid of one folder (what the Hub lists for folders); also its object's name."""
    # git orders tree entries by name, comparing folders as if their name ended in "/"
    ordered = sorted(children.items(), key=lambda kv: kv[0] + ("/" if isinstance(kv[1], str) else ""))
    body = b"".join(
        (b"40000 " if isinstance(node, str) else b"100644 ")
        + name.encode()
        + b"\0"
        + bytes.fromhex(node if isinstance(node, str) else node.oid)
        for name, node in ordered
    )
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


def encode_tree(children: dict[str, Entry | str]) -> bytes:
    return dump_json({n: {"tree": c} if isinstance(c, str) else c.to_json() for n, c in children.items()})


def decode_tree(data: bytes) -> dict[str, Entry | str]:
    return {
        name: e["tree"] if "tree" in e else Entry(e["sha256"], e["size"], e["oid"], e["lfs"])
        for name, e in json.loads(data).items()
    }


EMPTY_TREE = tree_oid({})


class Tree:
    """The files and folders of one commit, read folder by folder from content-addressed tree objects.

    ``load(oid)`` returns one folder's children; unchanged folders are shared between commits, so
    looking up a path costs one small read per folder level, not the whole listing.
    """

    def __init__(self, load: Callable[[str], dict[str, Entry | str]], root: str):
        self.load = load
        self.root = root
        self.files = _FileView(self)
        self.dirs = _DirView(self)

    def node(self, path: str) -> Entry | str | None:
        """The Entry of file ``path``, the tree oid of folder ``path`` ("" is the root), or None."""
        node: Entry | str = self.root
        for part in path.split("/") if path else ():
            if not isinstance(node, str):
                return None
            child = self.load(node).get(part)
            if child is None:
                return None
            node = child
        return node

    def walk(self, folder: str = "", recursive: bool = True) -> Iterator[tuple[str, Entry | str]]:
        """(path, Entry or folder oid) under ``folder``, folder by folder; nothing if it is no folder."""
        start = self.node(folder)
        if not isinstance(start, str):
            return
        todo = [(folder, start)]
        while todo:
            prefix, oid = todo.pop()
            for name, child in self.load(oid).items():
                path = f"{prefix}/{name}" if prefix else name
                yield path, child
                if recursive and isinstance(child, str):
                    todo.append((path, child))


class _FileView(Mapping[str, Entry]):
    """``tree.files``: path -> Entry; a lookup reads one folder per level, iterating reads them all."""

    def __init__(self, tree: Tree):
        self.tree = tree

    def __getitem__(self, path: str) -> Entry:
        node = self.tree.node(path) if path else None
        if not isinstance(node, Entry):
            raise KeyError(path)
        return node

    def __iter__(self) -> Iterator[str]:
        return (path for path, node in self.tree.walk() if not isinstance(node, str))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _DirView(Mapping[str, str]):
    """``tree.dirs``: folder path ("" for the root) -> git tree oid."""

    def __init__(self, tree: Tree):
        self.tree = tree

    def __getitem__(self, path: str) -> str:
        node = self.tree.node(path)
        if not isinstance(node, str):
            raise KeyError(path)
        return node

    def __iter__(self) -> Iterator[str]:
        yield ""
        yield from (path for path, node in self.tree.walk() if isinstance(node, str))

    def __len__(self) -> int:
        return sum(1 for _ in self)


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
        if COMMIT_RE.match(revision):
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
        self, parents: list[str], title: str, message: str, author: str, tree: str, date: str | None = None
    ) -> str:
        """Store an immutable commit object (``tree``: its root tree oid) and return its id; moves no ref.

        ``date`` is given only when history is rewritten (the rewritten commit keeps its date).
        """
        body = {
            "parents": parents,
            "title": title,
            "message": message,
            "author": author,
            "date": date or now_iso(),
            "tree": tree,
        }
        data = dump_json(body)
        commit_id = hashlib.sha1(data).hexdigest()
        atomic_write(self.path / "commits" / f"{commit_id}.json", data, self.store.tmp)
        return commit_id

    def load_tree(self, oid: str) -> dict[str, Entry | str]:
        return self.store.load_tree(self.path, oid)

    def write_tree(self, base: Tree, ops: list[tuple[str, str, Entry | None]]) -> str:
        """Apply ``ops`` (add, deletedFile, deletedFolder) to ``base`` and return the new root tree oid.

        Only the folders on the changed paths are copied and stored: a one-file commit writes one
        tree object per folder level, whatever the size of the repo.
        """
        changed: dict[str, dict[str, Entry | str | None]] = {}  # None: a changed sub-folder

        def folder(path: str, create: bool) -> dict[str, Entry | str | None] | None:
            if path in changed:
                return changed[path]
            if not path:
                children: dict[str, Entry | str | None] = dict(self.load_tree(base.root))
            else:
                parent_path, _, name = path.rpartition("/")
                parent = folder(parent_path, create)
                child = parent.get(name) if parent is not None else None
                if isinstance(child, Entry) and create:
                    raise HubError(400, f"'{path}' would be both a file and a folder in this commit")
                if parent is None or isinstance(child, Entry) or (child is None and not create):
                    return None
                children = dict(self.load_tree(child)) if child else {}
                parent[name] = None
            changed[path] = children
            return children

        for op, path, entry in ops:
            parent_path, _, name = path.rpartition("/")
            if op == "add":
                children = folder(parent_path, True)
                assert children is not None and entry is not None
                if name in children and not isinstance(children[name], Entry):
                    raise HubError(400, f"'{path}' would be both a file and a folder in this commit")
                children[name] = entry
                continue
            children = folder(parent_path, False)
            node = children.get(name) if children is not None else None
            if (
                children is None
                or name not in children
                or (op == "deletedFolder" and isinstance(node, Entry))
            ):
                what = "file" if op == "deletedFile" else "folder"
                raise HubError(404, f"A {what} with this name doesn't exist: {path}", "EntryNotFound")
            if not isinstance(node, Entry):  # a folder (a deletedFile naming one deletes it, as the Hub does)
                for doomed in [p for p in changed if p == path or p.startswith(path + "/")]:
                    del changed[doomed]
            del children[name]
        if not changed:
            return base.root
        for path in sorted(changed, key=lambda p: -(p.count("/") + 1) if p else 0):  # deepest first
            children = changed[path]
            parent_path, _, name = path.rpartition("/")
            if path and not children:  # git keeps no empty folders
                del changed[parent_path][name]
                continue
            done = {n: c for n, c in children.items() if c is not None}
            assert len(done) == len(children), "sub-folders are stored before their parent"
            oid = self.store.save_tree(self.path, done)
            if path:
                changed[parent_path][name] = oid
            else:
                return oid
        raise AssertionError("unreachable: the root is always among the changed folders")

    def last_commits(self, head: str, paths: list[str]) -> dict[str, Commit]:
        """For each path (file or folder), the newest commit that changed it, walking from ``head``."""
        todo = set(paths)
        found: dict[str, Commit] = {}
        for commit in self.history(head):
            if not todo:
                break
            parent = self.commit(commit.parents[0]).tree if commit.parents else None
            if parent is not None and parent.root == commit.tree.root:
                continue  # nothing changed in this commit
            for path in list(todo):
                now = commit.tree.node(path)
                before = parent.node(path) if parent is not None else None
                if now != before or parent is None:
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
        self._trees: OrderedDict[tuple[Path, str], dict[str, Entry | str]] = OrderedDict()
        self._tree_entries = 0  # entries held in _trees, bounded by TREE_CACHE_ENTRIES
        self._links: dict[Path, set[str]] = {}
        self.blob_lock = threading.RLock()  # linking a blob to a repo vs. collecting unlinked blobs

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        namespace, name = repo_id.split("/")
        return self.root / repo_type / namespace / name

    @contextmanager
    def lock(self, repo: Repo) -> Iterator[None]:
        """Hold the lock that serialises commits, ref and settings changes and the deletion of one repo.

        Inside, the repo is known to still exist (the same repo, not one re-created under its name
        since) and ``repo.meta`` is re-read, so a change made under the lock loses no other change.
        A repo moved while this waited for the lock is followed to its new folder (its old id
        redirects), so a commit racing a rename lands in the renamed repo, never in the old path.
        """
        with self._lock:
            lock = self._repo_locks.setdefault(repo.path, threading.Lock())
        with lock:
            repo_type, repo_id = repo.meta.repo_type, repo.meta.repo_id
            current = self.get(repo_type, repo_id)
            if current is None and (moved := self.redirect(repo_type, repo_id)) is not None:
                current = self.get(repo_type, moved)
            if current is None or current.meta.created_at != repo.meta.created_at:
                raise repo_not_found(repo_id)
            if current.path == repo.path:
                repo.meta = current.meta
                yield
                return
        repo.path, repo.meta = current.path, current.meta  # moved meanwhile: lock its new folder
        with self.lock(repo):
            yield

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
            with self.blob_lock:
                self._links.pop(repo.path, None)
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
            self.link(repo, {sha})
            entry = make_entry(sha, len(gitattributes), False, gitattributes)
            tree = repo.write_tree(Tree(repo.load_tree, EMPTY_TREE), [("add", ".gitattributes", entry)])
            first = repo.write_commit([], "initial commit", "", author, tree)
            repo.write_refs({"branches": {"main": first}, "tags": {}, "prs": {}})
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, target)
            _fsync_dir(target.parent)
            self._links.pop(staging, None)
            repo.path = target
            return repo

    def delete(self, repo: Repo) -> None:
        """Move the repo out of sight in one rename, then remove it.

        Under the repo's lock, so a commit racing the delete either lands before it (and is deleted
        with the repo) or finds no repo: nothing is ever written into a deleted repo's folder.
        """
        started = time.time()
        with self.lock(repo), self._lock:
            trash = self.tmp / f"deleted-{uuid.uuid4().hex}"
            os.rename(repo.path, trash)
            _fsync_dir(repo.path.parent)
            self._commits = OrderedDict((k, v) for k, v in self._commits.items() if k[0] != repo.path)
            self._links.pop(repo.path, None)
        try:
            self.collect(set((trash / "links.txt").read_text().split()), started)
        except FileNotFoundError:  # a repo from before blob links: nothing known to collect
            pass
        shutil.rmtree(trash, ignore_errors=True)

    def repair(self) -> list[str]:
        """Move aside repo folders that a crash or an older version left without metadata or refs.

        Such a folder is no repo (``get`` ignores it) but would block creating one under its name.
        Returns the ``type/namespace/name`` of each folder removed.
        """
        removed = []
        for folder in sorted(self.root.glob("*/*/*")):
            if folder.is_dir() and not (
                (folder / "repo.json").is_file() and (folder / "refs.json").is_file()
            ):
                trash = self.tmp / f"leftover-{uuid.uuid4().hex}"
                os.rename(folder, trash)
                shutil.rmtree(trash, ignore_errors=True)
                removed.append(folder.relative_to(self.root).as_posix())
        return removed

    def load_commit(self, repo_path: Path, commit_id: str) -> Commit:
        key = (repo_path, commit_id)
        with self._lock:
            if key in self._commits:
                self._commits.move_to_end(key)
                return self._commits[key]
        data = json.loads((repo_path / "commits" / f"{commit_id}.json").read_text())
        if not isinstance(data["tree"], str):
            raise HubError(
                500, f"Commit {commit_id} is in the storage format of an older hubkit; restart the Hub"
            )
        commit = Commit(
            commit_id,
            data["parents"],
            data["title"],
            data["message"],
            data["author"],
            data["date"],
            Tree(lambda oid: self.load_tree(repo_path, oid), data["tree"]),
        )
        with self._lock:
            self._commits[key] = commit
            while len(self._commits) > 256:
                self._commits.popitem(last=False)
        return commit

    # tree objects -----------------------------------------------------------------------------------
    def load_tree(self, repo_path: Path, oid: str) -> dict[str, Entry | str]:
        """One folder's children (read-only: shared by every commit holding that folder)."""
        if oid == EMPTY_TREE:
            return {}
        key = (repo_path, oid)
        with self._lock:
            if key in self._trees:
                self._trees.move_to_end(key)
                return self._trees[key]
        children = decode_tree((repo_path / "trees" / oid[:2] / oid[2:]).read_bytes())
        with self._lock:
            if key not in self._trees:
                self._trees[key] = children
                self._tree_entries += len(children)
            while self._tree_entries > TREE_CACHE_ENTRIES and len(self._trees) > 1:
                self._tree_entries -= len(self._trees.popitem(last=False)[1])
        return children

    def save_tree(self, repo_path: Path, children: dict[str, Entry | str]) -> str:
        """Store one folder as a tree object named by its git tree oid (once: it never changes)."""
        oid = tree_oid(children)
        path = repo_path / "trees" / oid[:2] / oid[2:]
        if oid != EMPTY_TREE and not path.exists():
            atomic_write(path, encode_tree(children), self.tmp)
        return oid

    # blobs linked to repos --------------------------------------------------------------------------
    def links(self, repo: Repo) -> set[str]:
        """The sha256 of every blob this repo committed or uploaded: the only ones it may reference.

        A blob stored for another repo must be uploaded again (proving its content is known)
        before a commit here may point at it, so a known oid alone reveals nothing.
        """
        with self.blob_lock:
            if repo.path not in self._links:
                try:
                    self._links[repo.path] = set((repo.path / "links.txt").read_text().split())
                except FileNotFoundError:  # every repo has one: this one was deleted (do not cache)
                    return set()
            return self._links[repo.path]

    def link(self, repo: Repo, shas: set[str]) -> None:
        """Record blobs as this repo's (appended and fsynced before any commit can point at them).

        Blobs are stored first (a collection spares blobs written since it started); one that a
        collection removed before this link is a 409: the commit or upload must be sent again.
        """
        with self.blob_lock:
            known = self.links(repo)
            new = sorted(shas - known)
            if not new:
                return
            if missing := [sha for sha in new if not self.blobs.has(sha)]:
                raise HubError(409, f"Blob {missing[0]} was removed by a concurrent repo deletion; retry")
            try:
                with open(repo.path / "links.txt", "a") as f:
                    f.write("".join(f"{sha}\n" for sha in new))
                    f.flush()
                    os.fsync(f.fileno())
            except FileNotFoundError as exc:  # deleted meanwhile
                raise repo_not_found(repo.meta.repo_id) from exc
            known.update(new)

    def unlink(self, repo: Repo, shas: set[str]) -> int:
        """Forget blobs as this repo's (its history no longer has them) and collect those unused elsewhere.

        After this, a commit here may point at such a blob only once its content is uploaded again.
        Returns the number of blobs removed from the store.
        """
        started = time.time()
        with self.blob_lock:
            known = self.links(repo)
            if not shas & known:
                return 0
            lines = "".join(f"{sha}\n" for sha in sorted(known - shas))
            atomic_write(repo.path / "links.txt", lines.encode(), self.tmp)
            known -= shas
            return self.collect(shas, started)

    def collect(self, candidates: set[str], started: float) -> int:
        """Remove the blobs among ``candidates`` that no repo links (a deleted repo's, or unlinked ones).

        Blobs written since ``started`` are kept: an upload may be about to link them.
        """
        candidates = set(candidates)
        removed = 0
        with self.blob_lock:
            for links_file in self.root.glob("*/*/*/links.txt"):
                candidates -= set(links_file.read_text().split())
                if not candidates:
                    return 0
            for sha in candidates:
                path = self.blobs.path(sha)
                try:
                    if path.stat().st_mtime < started:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def upgrade(self) -> list[str]:
        """Convert repos written by an older hubkit (every commit listing every file) to tree objects.

        Commit ids stay (they name the commit files; nothing recomputes them); ``links.txt``, written
        last, marks a repo as converted, so an interrupted upgrade resumes on the next start.
        """
        upgraded = []
        for meta_file in sorted(self.root.glob("*/*/*/repo.json")):
            path = meta_file.parent
            if (path / "links.txt").exists():
                continue
            repo = self.get(path.parent.parent.name, f"{path.parent.name}/{path.name}")
            if repo is None:
                continue
            shas: set[str] = set()
            for commit_file in sorted((path / "commits").glob("*.json")):
                data = json.loads(commit_file.read_text())
                if isinstance(data["tree"], dict):
                    entries = {
                        p: Entry(e["sha256"], e["size"], e["oid"], e["lfs"]) for p, e in data["tree"].items()
                    }
                    ops: list[tuple[str, str, Entry | None]] = [("add", p, e) for p, e in entries.items()]
                    data["tree"] = repo.write_tree(Tree(repo.load_tree, EMPTY_TREE), ops)
                    atomic_write(commit_file, dump_json(data), self.tmp)
                tree = Tree(repo.load_tree, data["tree"])
                shas |= {node.sha256 for _, node in tree.walk() if isinstance(node, Entry)}
            self.link(repo, shas)
            upgraded.append(repo.meta.repo_id)
        return upgraded
