"""Repos as a whole: create, delete, move, settings, listing, and a repo's info."""

from __future__ import annotations

from typing import Any

from .. import access, content_rules
from ..request import Request, field, flag
from ..storage import REPO_TYPES, HubError
from .metadata import card_data

_RESERVED = frozenset("api models datasets spaces docs settings organizations new login join".split())


def create_repo(req: Request) -> None:
    """POST /api/repos/create {name, organization, type, private}: an empty repo with a .gitattributes."""
    access.require_write(req, "create a repo")
    assert req.user.name is not None
    body = req.body.json()
    name = field(body, "name", str)
    namespace = field(body, "organization", str) or req.user.name
    repo_type = field(body, "type", str) or "model"
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise HubError(400, "Missing repo 'name'")
    if repo_type not in REPO_TYPES:
        raise HubError(400, f"Invalid repo type '{repo_type}': expected one of {', '.join(REPO_TYPES)}")
    if namespace in _RESERVED:
        raise HubError(400, f"'{namespace}' is a reserved name and cannot be a namespace")
    access.require_member(req, namespace, f"create a {repo_type} under the namespace '{namespace}'")
    private = field(body, "visibility", str) == "private" or field(body, "private", bool) is True
    repo_id = f"{namespace}/{name}"
    try:
        req.hub.repos.create(
            repo_type, repo_id, private, req.user.name, content_rules.default_gitattributes(repo_type)
        )
    except HubError as exc:
        if exc.status == 409:
            req.send_json({"error": exc.message, "url": req.repo_url(repo_type, repo_id)}, 409)
            return
        raise
    req.send_json({"url": req.repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id})


def delete_repo(req: Request) -> None:
    """DELETE /api/repos/delete {name, organization, type}."""
    body = req.body.json()
    repo_type = field(body, "type", str) or "model"
    name = field(body, "name", str)
    if not name:
        raise HubError(400, "Missing repo 'name'")
    repo_id = f"{field(body, 'organization', str) or req.user.name}/{name}"
    repo = access.writable(req, repo_type, repo_id)
    req.hub.repos.delete(repo)
    req.send_json({})


def move_repo(req: Request) -> None:
    """POST /api/repos/move {fromRepo, toRepo, type}: rename; the old id redirects to the new one."""
    body = req.body.json()
    repo_type = str(body.get("type") or "model")
    from_id, to_id = str(body.get("fromRepo") or ""), str(body.get("toRepo") or "")
    if repo_type not in REPO_TYPES or to_id.count("/") != 1:
        raise HubError(400, "Body must be {fromRepo: 'ns/name', toRepo: 'ns/name', type: 'model'|...}")
    repo = access.writable(req, repo_type, from_id)
    namespace = to_id.split("/")[0]
    access.require_member(req, namespace, f"move {repo_type} {from_id} to the namespace '{namespace}'")
    req.hub.repos.move(repo, to_id)
    req.send_json({"url": req.repo_url(repo_type, to_id)})


def update_settings(req: Request, repo_type: str, repo_id: str) -> None:
    """PUT /api/{type}s/{repo_id}/settings {private | visibility, gated}."""
    repo = access.writable(req, repo_type, repo_id)
    body = req.body.json()
    if body.get("visibility") not in (None, "private", "public"):
        raise HubError(400, "'visibility' must be 'private' or 'public'")
    field(body, "private", bool)
    if "gated" in body and not (body["gated"] is False or body["gated"] in ("auto", "manual")):
        raise HubError(400, "'gated' must be false, 'auto' or 'manual'")
    with req.hub.repos.lock(repo):
        if "visibility" in body:
            repo.meta.private = body["visibility"] == "private"
        if "private" in body:
            repo.meta.private = bool(body["private"])
        if "gated" in body:
            repo.meta.gated = body["gated"]
        req.hub.repos.save_meta(repo)
    req.send_json({})


def auth_check(req: Request, repo_type: str, repo_id: str) -> None:
    """GET /api/{type}s/{repo_id}/auth-check: 200 if the caller may read the repo, gate included."""
    repo = access.readable(req, repo_type, repo_id)
    access.check_gate(req, repo)
    req.send_json({})


def list_repos(req: Request, repo_type: str) -> None:
    """GET /api/{type}s?author=&search=&limit=: the repos the caller may see."""
    author, search = req.query.get("author"), (req.query.get("search") or "").lower()
    limit = int(req.query["limit"]) if req.query.get("limit", "").isdigit() else None
    out = []
    for repo in req.hub.repos.all(repo_type):
        if not access.may_see(req, repo):
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
    req.send_json(out)


def repo_info(req: Request, repo_type: str, repo_id: str, revision: str | None) -> None:
    """GET /api/{type}s/{repo_id}[/revision/{revision}]: the repo at a revision, with its files."""
    repo = access.readable(req, repo_type, repo_id)
    repo_id = repo.meta.repo_id  # its own spelling: ids are case-insensitive
    sha = repo.resolve(revision or "main")
    commit = repo.commit(sha)
    blobs = flag(req.query.get("blobs"))
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
    card = card_data(req.hub.blobs, commit)
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
    req.send_json(info)
