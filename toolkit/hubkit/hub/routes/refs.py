"""Branches and tags: listing the refs, creating and deleting them."""

from __future__ import annotations

from typing import Any

from .. import access
from ..request import Request, field, flag
from ..storage import HubError, revision_not_found


def list_refs(req: Request, repo_type: str, repo_id: str) -> None:
    """GET /api/{type}s/{repo_id}/refs: branches and tags (and pull requests if asked)."""
    repo = access.readable(req, repo_type, repo_id)
    refs = repo.refs()
    out: dict[str, Any] = {
        "branches": [
            {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c}
            for n, c in sorted(refs["branches"].items())
        ],
        "converts": [],
        "tags": [
            {"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in sorted(refs["tags"].items())
        ],
    }
    if flag(req.query.get("include_prs")):
        out["pullRequests"] = [
            {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": c}
            for n, c in sorted(refs["prs"].items(), key=lambda kv: int(kv[0]))
        ]
    req.send_json(out)


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


def branch(req: Request, repo_type: str, repo_id: str, name: str) -> None:
    """POST /branch/{name} {startingPoint} creates a branch; DELETE /branch/{name} removes one."""
    repo = access.writable(req, repo_type, repo_id)
    body = req.body.json() if req.method == "POST" else {}
    with req.hub.repos.lock(repo):
        refs = repo.refs()
        if req.method == "DELETE":
            if name == "main":
                raise HubError(403, "Cannot delete refs/heads/main: it is the default branch")
            if refs["branches"].pop(name, None) is None:
                raise revision_not_found(name)
        else:
            _check_ref_name(name, "branch")
            if name in refs["branches"]:
                raise HubError(409, f"Reference refs/heads/{name} already exists")
            refs["branches"][name] = repo.resolve(field(body, "startingPoint", str) or "main")
        repo.write_refs(refs)
    req.send_json({})


def tag(req: Request, repo_type: str, repo_id: str, target: str) -> None:
    """POST /tag/{revision} {"tag": name} creates a tag; DELETE /tag/{name} removes one."""
    repo = access.writable(req, repo_type, repo_id)
    body = req.body.json() if req.method == "POST" else {}
    with req.hub.repos.lock(repo):
        refs = repo.refs()
        if req.method == "DELETE":
            if refs["tags"].pop(target, None) is None:
                raise revision_not_found(target)
        else:
            commit_id = repo.resolve(target)  # RevisionNotFound first, as on the Hub
            tag = _check_ref_name(field(body, "tag", str) or "", "tag")
            if tag in refs["tags"]:
                raise HubError(409, f"Reference refs/tags/{tag} already exists")
            refs["tags"][tag] = commit_id
        repo.write_refs(refs)
    req.send_json({})
