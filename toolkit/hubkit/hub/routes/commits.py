"""Commits: which upload mode each file takes (preupload), the NDJSON commit itself, history."""

from __future__ import annotations

import base64
import binascii
import html
import json
from typing import Any

from .. import access, content_rules, history
from ..request import Request, field, flag
from ..storage import (
    COMMIT_RE,
    SHA256_RE,
    Entry,
    HubError,
    Repo,
    make_entry,
    revision_not_found,
    validate_path_in_repo,
)

_COMMITS_PAGE = 50


def _b64decode(content: Any, what: str) -> bytes:
    """Strict base64 (no stray characters, right padding): a typo must not commit an empty file."""
    try:
        if not isinstance(content, str):
            raise TypeError
        return base64.b64decode(content, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise HubError(400, f"Invalid base64 {what}") from exc


def preupload(req: Request, repo_type: str, repo_id: str, revision: str) -> None:
    """POST /api/{type}s/{repo_id}/preupload/{revision}: LFS or regular, and ignored or not, per file."""
    repo = access.writable(req, repo_type, repo_id, pull_request=flag(req.query.get("create_pr")))
    body = req.body.json()
    sha = repo.resolve(revision)
    tree = repo.commit(sha).tree
    patterns = content_rules.lfs_patterns(_text(req, tree.files.get(".gitattributes")))
    gitignore = body.get("gitIgnore")
    if not isinstance(gitignore, str):
        gitignore = _text(req, tree.files.get(".gitignore"))
    files = body.get("files")
    if not isinstance(files, list):
        raise HubError(400, "Body must be {'files': [{path, sample, size}, ...]}")
    out = []
    for item in files:
        if not isinstance(item, dict):
            raise HubError(400, "Each preupload entry must be an object {path, sample, size}")
        path = validate_path_in_repo(str(item.get("path", "")))
        sample = _b64decode(item.get("sample") or "", f"sample for '{path}'")
        size = field(item, "size", int, f"preupload entry for '{path}'")
        if size is None or size < 0:
            raise HubError(400, f"Invalid preupload entry for '{path}': 'size' must be a number >= 0")
        result: dict[str, Any] = {
            "path": path,
            "uploadMode": content_rules.upload_mode(path, size, sample, patterns),
            "shouldIgnore": content_rules.ignored(path, gitignore),
        }
        if (existing := tree.files.get(path)) is not None:
            result["oid"] = existing.sha256 if existing.lfs else existing.oid
        out.append(result)
    req.send_json({"files": out, "commitOid": sha})


def _text(req: Request, entry: Entry | None) -> str:
    if entry is None or entry.size > 1024 * 1024:
        return ""
    return req.hub.blobs.read(entry.sha256).decode("utf-8", "replace")


def commit(req: Request, repo_type: str, repo_id: str, revision: str) -> None:
    """POST /api/{type}s/{repo_id}/commit/{revision}: apply an NDJSON commit to a branch, or open a PR."""
    create_pr = flag(req.query.get("create_pr"))
    repo = access.writable(req, repo_type, repo_id, pull_request=create_pr)
    assert req.user.name is not None
    header, ops = _parse_commit_payload(req, repo)
    summary = (field(header, "summary", str, "commit header") or "").strip()
    if not summary:
        raise HubError(400, "The commit summary (message) must not be empty")
    description = field(header, "description", str, "commit header") or ""
    parent = field(header, "parentCommit", str, "commit header")
    if parent is not None and not COMMIT_RE.match(parent.lower()):
        raise HubError(400, f"Invalid parentCommit '{parent}': expected a commit id (7 to 40 hex digits)")
    with req.hub.repos.lock(repo):
        refs = repo.refs()
        kind, name = _commit_target(repo, refs, revision, create_pr)
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
        new_id = repo.write_commit([base], summary, description, req.user.name, tree)
        if create_pr:
            kind, name = "prs", str(max((int(n) for n in refs["prs"]), default=0) + 1)
        refs[kind][name] = new_id
        repo.write_refs(refs)
    url = req.repo_url(repo_type, repo_id)
    req.send_json(
        {
            "success": True,
            "commitOid": new_id,
            "commitUrl": f"{url}/commit/{new_id}",
            "commitMessage": summary,
            "hookOutput": "",
            "pullRequestUrl": f"{url}/discussions/{name}" if create_pr else None,
        }
    )


def _parse_commit_payload(
    req: Request, repo: Repo
) -> tuple[dict[str, Any], list[tuple[str, str, Entry | None]]]:
    """Read the NDJSON commit body line by line, storing regular files' contents as they come."""
    if "json" in (req.headers.get("Content-Type") or "") and "ndjson" not in req.headers["Content-Type"]:
        raise HubError(400, "The commit payload must be NDJSON (Content-Type: application/x-ndjson)")
    header: dict[str, Any] | None = None
    ops: list[tuple[str, str, Entry | None]] = []
    for number, line in enumerate(req.body.lines(), start=1):
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
            ops.append(("add", path, make_entry(req.hub.blobs.put_bytes(data), len(data), False, data)))
        elif key == "lfsFile":
            oid = str(value.get("oid", "")).lower()
            size = field(value, "size", int, f"lfsFile entry for '{path}'")
            if not SHA256_RE.match(oid):
                raise HubError(400, f"Invalid LFS oid for '{path}': expected 64 hex digits (a sha256)")
            linked = oid in req.hub.repos.links(repo) and req.hub.blobs.has(oid, size)
            if value.get("algo", "sha256") != "sha256" or not linked:
                raise HubError(
                    400,
                    f"LFS object {oid} for '{path}' was not uploaded (or has another size); "
                    "upload it through the LFS batch endpoint before committing.",
                )
            if size is None:
                size = req.hub.blobs.path(oid).stat().st_size
            ops.append(("add", path, make_entry(oid, int(size), True)))
        elif key in ("deletedFile", "deletedFolder"):
            ops.append((key, path, None))
        else:
            raise HubError(400, f"Unknown operation '{key}' on line {number} of the commit payload")
    if header is None:
        raise HubError(400, "The commit payload has no 'header' line")
    req.hub.repos.link(repo, {e.sha256 for op, _, e in ops if e is not None and not e.lfs})
    return header, ops


def _commit_target(
    repo: Repo, refs: dict[str, dict[str, str]], revision: str, create_pr: bool
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
    raise HubError(400, f"Revision '{revision}' is not a branch: commits go to a branch or a refs/pr/N ref")


def list_commits(req: Request, repo_type: str, repo_id: str, revision: str) -> None:
    """GET /api/{type}s/{repo_id}/commits/{revision}: the history, newest first, paginated."""
    repo = access.readable(req, repo_type, repo_id)
    page, headers = req.page(repo.history(repo.resolve(revision)), _COMMITS_PAGE)
    formatted = "formatted" in req.query_all.get("expand[]", [])
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
    req.send_json(out, headers=headers)


def super_squash(req: Request, repo_type: str, repo_id: str, revision: str) -> None:
    """POST /api/{type}s/{repo_id}/super-squash/{revision}: the branch as one commit."""
    repo = access.writable(req, repo_type, repo_id)
    assert req.user.name is not None
    message = str(req.body.json().get("message") or "").strip() or f"Super-squash branch '{revision}'"
    with req.hub.repos.lock(repo):
        commit_id = history.super_squash(repo, revision, message, req.user.name)
    req.send_json({"commitId": commit_id})
