"""Who may see and change a repo: the checks every route makes before it reads or writes.

Token authentication (who the caller is) is ``auth.py``; this decides what that caller may do,
and answers as the Hub does: 401 without a token, 403 without the right, 404 for a private repo.
"""

from __future__ import annotations

from urllib.parse import quote

from .request import Request
from .storage import HubError, Repo, repo_not_found


def require_write(req: Request, action: str) -> None:
    """401 without a token, 403 with a read-only one."""
    if req.user.name is None:
        raise HubError(401, f"You must be authenticated with a write token to {action}.")
    if not req.user.can_write:
        raise HubError(403, f"The token of '{req.user.name}' is read-only: it cannot {action}.")


def may_see(req: Request, repo: Repo) -> bool:
    """Whether the caller may know the repo exists: it is public or in one of the caller's namespaces."""
    return not repo.meta.private or req.user.member_of(repo.meta.repo_id.split("/")[0])


def readable(req: Request, repo_type: str, repo_id: str) -> Repo:
    """The repo, or 404 RepoNotFound when it is missing or private outside the caller's namespaces."""
    repo = req.hub.repos.get(repo_type, repo_id)
    if repo is None and (moved := req.hub.repos.redirect(repo_type, repo_id)) is not None:
        target = req.hub.repos.get(repo_type, moved)
        if target is not None and may_see(req, target):
            location = {"Location": _moved_url(req, moved)}
            raise HubError(307, f"{repo_id} moved to {moved}", headers=location)
    if repo is None or not may_see(req, repo):
        raise repo_not_found(repo_id)
    return repo


def _moved_url(req: Request, new_id: str) -> str:
    """This request's path and query with the repo id (the two segments after the type) replaced."""
    segments = req.raw_path.split("/")
    start = 3 if segments[1] == "api" else 2 if segments[1] in ("datasets", "spaces", "kernels") else 1
    git = ".git" if segments[start + 1].endswith(".git") else ""  # the LFS routes: {repo_id}.git/info/lfs
    segments[start : start + 2] = [quote(part, safe="") for part in new_id.split("/")]
    segments[start + 1] += git
    query = req.path.partition("?")[2]
    return "/".join(segments) + (f"?{query}" if query else "")


def writable(req: Request, repo_type: str, repo_id: str, pull_request: bool = False) -> Repo:
    """The repo, if the caller may write to it: a member of its namespace, or, for a pull
    request (a ``create_pr`` commit and its uploads), any write token that may see it, as on the Hub.
    """
    repo = readable(req, repo_type, repo_id)
    require_write(req, f"write to {repo_id}")
    if not pull_request:
        require_member(req, repo_id.split("/")[0], f"write to {repo_type} {repo_id}")
    return repo


def require_member(req: Request, namespace: str, action: str) -> None:
    """403, as on the Hub, when the caller neither is ``namespace`` nor belongs to that organisation."""
    if not req.user.member_of(namespace):
        raise HubError(
            403,
            f"You don't have the rights to {action}: '{namespace}' is neither you nor one of your orgs",
        )


def check_gate(req: Request, repo: Repo) -> None:
    """A gated repo is readable by its namespace's user or org members only (anyone on an open Hub)."""
    if not repo.meta.gated or req.hub.auth.open:
        return
    what = f"{repo.meta.repo_type} {repo.meta.repo_id}"
    if req.user.name is None:
        raise HubError(
            401,
            f"Access to {what} is restricted: it is gated; authenticate with a token.",
            "GatedRepo",
        )
    if not req.user.member_of(repo.meta.repo_id.split("/")[0]):
        raise HubError(
            403,
            f"Access to {what} is restricted and you are not in the authorized list. "
            f"Visit {req.repo_url(repo.meta.repo_type, repo.meta.repo_id)} to ask for access.",
            "GatedRepo",
        )
