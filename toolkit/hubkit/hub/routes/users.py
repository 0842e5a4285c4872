"""Who the caller is, and the repos of a user's or organisation's namespace."""

from __future__ import annotations

import hashlib

from .. import access
from ..request import Request
from ..storage import REPO_TYPES, HubError
from .files import TREE_PAGE


def whoami(req: Request) -> None:
    """GET /api/whoami-v2: the token's user, its organisations and role."""
    user = req.user
    if user.name is None:
        raise HubError(401, "Invalid credentials in Authorization header")
    req.send_json(
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


def repo_storage(req: Request, namespace: str | None) -> None:
    """The repos of a namespace with the storage each one uses (``hf repos ls``)."""
    if req.user.name is None or namespace is None:
        raise HubError(401, "You must be authenticated to list a namespace's repositories.")
    out = []
    for repo_type in REPO_TYPES:
        for repo in req.hub.repos.all(repo_type):
            if repo.meta.repo_id.split("/")[0].lower() != namespace.lower() or not access.may_see(req, repo):
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
    page, headers = req.page(out, TREE_PAGE)
    req.send_json(page, headers=headers)
