"""Who is calling: access tokens and the user each one stands for.

A server started with no tokens is "open" (the offline default): every caller, with or without
a token, is the user ``hubkit`` with write access to every namespace. With tokens, a request
without a known token is anonymous and may only read public repos; a user writes only in its own
namespace and in the organisations it belongs to, and sees private repos of those namespaces only.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("read", "write")
OPEN_USER = "hubkit"
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,41}$")


@dataclass(frozen=True)
class Token:
    """An access token: the user ``name`` it authenticates and its ``role`` (read or write)."""

    name: str
    token: str = field(repr=False)
    role: str = "write"

    def __post_init__(self) -> None:
        if not _USER_RE.match(self.name):
            raise ValueError(f"invalid user name {self.name!r}: use letters, digits, '-', '_' or '.'")
        if not self.token or any(c.isspace() or c == ":" for c in self.token):
            raise ValueError(f"invalid token for {self.name!r}: it must be non-empty, without spaces or ':'")
        if self.role not in ROLES:
            raise ValueError(f"invalid role {self.role!r} for {self.name!r}: expected 'read' or 'write'")

    @classmethod
    def parse(cls, spec: str) -> Token:
        """Parse ``NAME:TOKEN:read|write`` (as given to ``hubkit hub serve --token``)."""
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(f"invalid token spec {spec!r}: expected NAME:TOKEN:read|write")
        return cls(*parts)


def load_token_file(path: str | Path) -> list[Token]:
    """Tokens from a file, one ``NAME:TOKEN:read|write`` a line (``#`` comments), kept out of ``ps``."""
    tokens = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            try:
                tokens.append(Token.parse(line))
            except ValueError:  # the message would quote the line, token included
                raise ValueError(f"{path}, line {number}: expected NAME:TOKEN:read|write") from None
    return tokens


def parse_org(spec: str) -> tuple[str, frozenset[str]]:
    """Parse ``ORG:user1,user2`` (as given to ``hubkit hub serve --org``): an organisation and its members."""
    name, sep, members = spec.partition(":")
    users = frozenset(m.strip() for m in members.split(",") if m.strip())
    if not sep or not _USER_RE.match(name) or not users or not all(_USER_RE.match(u) for u in users):
        raise ValueError(f"invalid organisation {spec!r}: expected ORG:user1,user2")
    return name, users


@dataclass(frozen=True)
class User:
    """The caller of one request; ``name`` is None for anonymous callers.

    ``namespaces`` are where it may write and see private repos: its own name and its
    organisations; ``None`` means every namespace (the single user of an open Hub).
    """

    name: str | None
    role: str | None = None
    token_name: str | None = None
    namespaces: frozenset[str] | None = frozenset()
    orgs: tuple[str, ...] = ()

    @property
    def can_write(self) -> bool:
        return self.role == "write"

    def member_of(self, namespace: str) -> bool:
        """Namespaces compare case-insensitively, as repo ids do on the Hub."""
        if self.name is None or self.namespaces is None:
            return self.name is not None
        return namespace.lower() in {n.lower() for n in self.namespaces}


ANONYMOUS = User(None)


class Authenticator:
    """Maps the ``Authorization: Bearer`` header of a request to a :class:`User`."""

    def __init__(self, tokens: Sequence[Token], orgs: Mapping[str, Iterable[str]] | None = None):
        self.tokens = list(tokens)
        self.orgs = {org: frozenset(members) for org, members in (orgs or {}).items()}
        clash = sorted(self.orgs.keys() & {t.name for t in self.tokens})
        if clash:
            raise ValueError(f"'{clash[0]}' is both a user and an organisation")

    @property
    def open(self) -> bool:
        return not self.tokens

    def user(self, authorization: str | None) -> User:
        if self.open:
            return User(OPEN_USER, "write", "open", namespaces=None)
        scheme, _, secret = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secret:
            return ANONYMOUS
        for token in self.tokens:
            if hmac.compare_digest(token.token.encode(), secret.strip().encode()):
                orgs = tuple(sorted(org for org, members in self.orgs.items() if token.name in members))
                return User(token.name, token.role, token.name, frozenset({token.name, *orgs}), orgs)
        return ANONYMOUS
