"""Large files: the LFS batch API and signed uploads, and listing or purging a repo's LFS files."""

from __future__ import annotations

import hmac
import json
import time
from urllib.parse import urlencode

from .. import access, history
from ..request import URL_PREFIX, Request, field
from ..storage import SHA256_RE, HubError, repo_not_found
from .files import TREE_PAGE

_UPLOAD_URL_TTL = 24 * 3600


def lfs_batch(req: Request, repo_type: str, repo_id: str) -> None:
    """POST /{repo_id}.git/info/lfs/objects/batch: a signed upload URL for each object not stored yet."""
    # the client's batch call says nothing of a pull request: uploading content is open to anyone
    # who may open one; only a member's commit (or a PR) can then make it part of the repo
    repo = access.writable(req, repo_type, repo_id, pull_request=True)
    body = req.body.json()
    if body.get("operation") != "upload":
        raise HubError(422, "Only the LFS 'upload' operation is supported; download files via /resolve/.")
    objects = []
    expires = int(time.time()) + _UPLOAD_URL_TTL
    for obj in field(body, "objects", list) or []:
        oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
        if not isinstance(oid, str) or not SHA256_RE.match(oid.lower()) or type(size) is not int or size < 0:
            objects.append(
                {
                    "oid": str(oid),
                    "size": size if isinstance(size, int) else 0,
                    "error": {"code": 422, "message": "Invalid oid or size"},
                }
            )
            continue
        oid = oid.lower()
        if oid in req.hub.repos.links(repo) and req.hub.blobs.has(oid, size):
            objects.append({"oid": oid, "size": size})  # already stored for this repo: no upload action
            continue
        sig = req.hub.sign(repo.meta.repo_type, repo_id, oid, size, expires)
        query = urlencode({"size": size, "expires": expires, "sig": sig})
        href = f"{req.base_url}/{URL_PREFIX[repo_type]}{repo_id}.git/info/lfs/objects/{oid}?{query}"
        objects.append(
            {"oid": oid, "size": size, "authenticated": True, "actions": {"upload": {"href": href}}}
        )
    payload = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
    req.send_body(200, payload, "application/vnd.git-lfs+json")


def lfs_upload(req: Request, repo_type: str, repo_id: str, oid: str) -> None:
    """PUT of one LFS object (basic transfer), authorised by the signed URL from the batch call."""
    try:
        size, expires = int(req.query.get("size", "")), int(req.query.get("expires", ""))
    except ValueError as exc:
        raise HubError(400, "Upload URL lacks size/expires; ask the LFS batch endpoint for one") from exc
    if not SHA256_RE.match(oid):
        raise HubError(400, f"Invalid LFS object id '{oid}': expected 64 lowercase hex digits")
    expected = req.hub.sign(repo_type, repo_id, oid, size, expires)
    if not hmac.compare_digest(expected, req.query.get("sig", "")) or expires < time.time():
        raise HubError(403, "Invalid or expired upload URL; ask the LFS batch endpoint for a new one")
    repo = req.hub.repos.get(repo_type, repo_id)
    if repo is None:
        raise repo_not_found(repo_id)
    if req.body.length is not None and req.body.length != size:
        raise HubError(400, f"Content-Length {req.body.length} does not match the object size {size}")
    req.hub.blobs.receive(req.body.readinto, size, oid)
    req.hub.repos.link(repo, {oid})
    req.send_json({})


def lfs_files(req: Request, repo_type: str, repo_id: str) -> None:
    """GET /api/{type}s/{repo_id}/lfs-files: the LFS files of every ref, paginated."""
    repo = access.writable(req, repo_type, repo_id)
    page, headers = req.page(history.lfs_files(repo), TREE_PAGE)
    req.send_json(page, headers=headers)


def delete_lfs_files(req: Request, repo_type: str, repo_id: str) -> None:
    """POST lfs-files/batch {deletions: {sha: [...], rewriteHistory}}: drop them from every ref."""
    repo = access.writable(req, repo_type, repo_id)
    deletions = req.body.json().get("deletions")
    shas = deletions.get("sha") if isinstance(deletions, dict) else None
    if not isinstance(shas, list) or not all(isinstance(sha, str) for sha in shas):
        raise HubError(400, "Body must be {deletions: {sha: [sha256, ...], rewriteHistory: true}}")
    if deletions.get("rewriteHistory") is False:
        raise HubError(422, "The local Hub deletes LFS files by rewriting history (rewriteHistory: true)")
    with req.hub.repos.lock(repo):
        gone = history.drop_lfs_files(repo, {sha.lower() for sha in shas})
        req.hub.repos.unlink(repo, gone)  # their bytes go too, unless another repo links them
    req.send_json({})
