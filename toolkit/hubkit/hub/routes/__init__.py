"""The router of the local Hub: which route function answers a method and path.

Each module here is one group of the Hub's HTTP API; a route function takes the ``Request``
and answers it. ``route`` is what the server calls for every request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..request import Request
from ..storage import HubError, repo_not_found
from . import commits, files, lfs, metadata, refs, repos, users

_API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space", "kernels": "kernel"}
# the first path segment after /api/{type}s/{repo_id}/: tells a namespace-less repo id from a namespace
_REPO_ROUTES = frozenset(
    "revision preupload commit tree paths-info refs commits branch tag settings auth-check super-squash "
    "lfs-files".split()
)


def _split_revision(segments: list[str]) -> tuple[str, list[str]]:
    """Revision and the rest of the path. Clients URL-encode revisions (``refs%2Fpr%2F1``);
    an unencoded ``refs/pr/1`` or ``refs/convert/parquet`` is accepted too."""
    if not segments or not segments[0]:
        raise HubError(400, "Missing revision in URL")
    if segments[0] == "refs" and len(segments) >= 3:
        return "/".join(segments[:3]), segments[3:]
    return segments[0], segments[1:]


def route(req: Request, method: str, segs: list[str]) -> Callable[[], None]:
    """The call that answers ``method`` on the path ``segs`` (URL-decoded); 404 if none does."""
    match segs:
        case ["api", "whoami-v2"] if method == "GET":
            return functools.partial(users.whoami, req)
        case ["api", "repos", "create"] if method == "POST":
            return functools.partial(repos.create_repo, req)
        case ["api", "repos", "delete"] if method == "DELETE":
            return functools.partial(repos.delete_repo, req)
        case ["api", "validate-yaml"] if method == "POST":
            return functools.partial(metadata.validate_yaml, req)
        case ["api", "repos", "move"] if method == "POST":
            return functools.partial(repos.move_repo, req)
        case ["api", "settings", "repositories"] if method == "GET":
            return lambda: users.repo_storage(req, req.user.name)
        case ["api", "organizations", namespace, "settings", "repositories"] if method == "GET":
            return lambda: users.repo_storage(req, namespace)
        case ["api", kind, name] if kind in _API_TYPES:
            raise repo_not_found(name)  # a repo id without a namespace: never a repo here
        case ["api", kind, name, segment, *_] if (
            kind in _API_TYPES
            and segment in _REPO_ROUTES
            and req.hub.repos.get(_API_TYPES[kind], f"{name}/{segment}") is None
        ):
            raise repo_not_found(name)
        case ["api", kind] if kind in _API_TYPES and method == "GET":
            return lambda: repos.list_repos(req, _API_TYPES[kind])
        case ["api", kind, namespace, name, *rest] if kind in _API_TYPES:
            return _route_repo_api(req, method, _API_TYPES[kind], f"{namespace}/{name}", rest)
    repo_type = "model"
    if segs and segs[0] in ("datasets", "spaces", "kernels") and len(segs) > 3:
        repo_type, segs = _API_TYPES[segs[0]], segs[1:]
    match segs:
        case [namespace, git_name, "info", "lfs", "objects", "batch"] if (
            method == "POST" and git_name.endswith(".git")
        ):
            return lambda: lfs.lfs_batch(req, repo_type, f"{namespace}/{git_name[:-4]}")
        case [namespace, git_name, "info", "lfs", "objects", oid] if method == "PUT" and git_name.endswith(
            ".git"
        ):
            return lambda: lfs.lfs_upload(req, repo_type, f"{namespace}/{git_name[:-4]}", oid)
        case [namespace, name, "resolve", *rest] if method in ("GET", "HEAD"):
            revision, path = _split_revision(rest)
            return lambda: files.resolve(req, repo_type, f"{namespace}/{name}", revision, "/".join(path))
        case [name, "resolve", *_] if method in ("GET", "HEAD"):
            raise repo_not_found(name)  # a repo id without a namespace
    raise HubError(404, f"No route for {method} {req.raw_path}")


def _route_repo_api(
    req: Request, method: str, repo_type: str, repo_id: str, rest: list[str]
) -> Callable[[], None]:
    match rest:
        case [] if method == "GET":
            return lambda: repos.repo_info(req, repo_type, repo_id, None)
        case ["revision", *rev] if method == "GET":
            return lambda: repos.repo_info(req, repo_type, repo_id, _split_revision(rev)[0])
        case ["preupload", *rev] if method == "POST":
            return lambda: commits.preupload(req, repo_type, repo_id, _split_revision(rev)[0])
        case ["commit", *rev] if method == "POST":
            return lambda: commits.commit(req, repo_type, repo_id, _split_revision(rev)[0])
        case ["tree", *rev] if method == "GET":
            revision, path = _split_revision(rev)
            return lambda: files.tree(req, repo_type, repo_id, revision, "/".join(path))
        case ["paths-info", *rev] if method == "POST":
            return lambda: files.paths_info(req, repo_type, repo_id, _split_revision(rev)[0])
        case ["refs"] if method == "GET":
            return lambda: refs.list_refs(req, repo_type, repo_id)
        case ["commits", *rev] if method == "GET":
            return lambda: commits.list_commits(req, repo_type, repo_id, _split_revision(rev)[0])
        case ["branch", *name] if method in ("POST", "DELETE") and name:
            return lambda: refs.branch(req, repo_type, repo_id, "/".join(name))
        case ["tag", *name] if method in ("POST", "DELETE") and name:
            return lambda: refs.tag(req, repo_type, repo_id, "/".join(name))
        case ["settings"] if method == "PUT":
            return lambda: repos.update_settings(req, repo_type, repo_id)
        case ["auth-check"] if method == "GET":
            return lambda: repos.auth_check(req, repo_type, repo_id)
        case ["super-squash", *rev] if method == "POST":
            return lambda: commits.super_squash(req, repo_type, repo_id, _split_revision(rev)[0])
        case ["lfs-files"] if method == "GET":
            return lambda: lfs.lfs_files(req, repo_type, repo_id)
        case ["lfs-files", "batch"] if method == "POST":
            return lambda: lfs.delete_lfs_files(req, repo_type, repo_id)
    raise HubError(404, f"No route for {method} {req.raw_path}")
