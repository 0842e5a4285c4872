"""Reading a repo's files: tree listings, paths-info, and downloads (resolve, with ranges)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, quote

from .. import access
from ..body import MAX_JSON_BODY
from ..request import Request, flag
from ..storage import Commit, Entry, HubError, Repo

TREE_PAGE, _TREE_PAGE_EXPANDED = 1000, 50


def _file_json(path: str, entry: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
    if entry.lfs:
        out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return out


def _commit_ref_json(commit: Commit) -> dict[str, str]:
    return {"id": commit.id, "title": commit.title, "date": commit.date}


def _expand(repo: Repo, head: str, entries: list[dict[str, Any]]) -> None:
    last = repo.last_commits(head, [e["path"] for e in entries])
    for e in entries:
        e["lastCommit"] = _commit_ref_json(last[e["path"]])


def tree(req: Request, repo_type: str, repo_id: str, revision: str, path: str) -> None:
    """GET /api/{type}s/{repo_id}/tree/{revision}/{path}: a folder's entries, paginated."""
    repo = access.readable(req, repo_type, repo_id)
    sha = repo.resolve(revision)
    tree = repo.commit(sha).tree
    path = path.strip("/")
    if path and path not in tree.dirs:
        raise HubError(
            404, f"Folder '{path}' does not exist at {revision}", "EntryNotFound", {"X-Repo-Commit": sha}
        )
    recursive, expand = flag(req.query.get("recursive")), flag(req.query.get("expand"))
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
    page, headers = req.page(entries, _TREE_PAGE_EXPANDED if expand else TREE_PAGE)
    if expand:
        _expand(repo, sha, page)
    req.send_json(page, headers=headers)


def paths_info(req: Request, repo_type: str, repo_id: str, revision: str) -> None:
    """POST /api/{type}s/{repo_id}/paths-info/{revision}: the entries of the given paths."""
    repo = access.readable(req, repo_type, repo_id)
    raw = req.body.all(MAX_JSON_BODY)
    if "json" in (req.headers.get("Content-Type") or ""):
        try:
            data = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise HubError(400, f"Request body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise HubError(400, "Request body must be a JSON object {paths, expand}")
        paths, expand = data.get("paths") or [], bool(data.get("expand"))
    else:
        form = parse_qs(raw.decode(), keep_blank_values=True)
        paths, expand = form.get("paths", []), flag((form.get("expand") or [""])[-1])
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
        _expand(repo, sha, out)
    req.send_json(out)


def resolve(req: Request, repo_type: str, repo_id: str, revision: str, path: str) -> None:
    """GET or HEAD /{repo_id}/resolve/{revision}/{path}: a file's bytes (or a range of them)."""
    repo = access.readable(req, repo_type, repo_id)
    access.check_gate(req, repo)
    sha = repo.resolve(revision)
    entry = repo.commit(sha).tree.files.get(path)
    if entry is None:
        raise HubError(404, f"Entry not found: {path} at {revision}", "EntryNotFound", {"X-Repo-Commit": sha})
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
    if (spec := req.headers.get("Range")) and "," not in spec:
        start, end = _parse_range(spec, entry.size, headers)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
    length = max(0, end - start + 1)
    try:
        blob = req.hub.blobs.open(entry.sha256)
    except FileNotFoundError as exc:  # an LFS file permanently deleted: only an old commit names it
        raise HubError(
            404,
            f"Entry not found: {path} at {revision} (its content was permanently deleted)",
            "EntryNotFound",
            {"X-Repo-Commit": sha},
        ) from exc
    with blob:
        req.send_response(status)
        for key, value in headers.items():
            req.send_header(key, value)
        req.send_header("Content-Length", str(length))
        req.end_headers()
        req.sent_headers = True
        if req.method == "GET" and length:
            req.connection.sendfile(blob, offset=start, count=length)


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
