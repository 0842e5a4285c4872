"""Who is calling: access tokens and the user each one stands for.

A server started with no tokens is "open" (the offline default): every caller, with or without
a token, is the user ``hubkit`` with write access. With tokens, a request without a known token
is anonymous and may only read public repos.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class User:
    """The caller of one request; ``name`` is None for anonymous callers."""

    name: str | None
    role: str | None = None
    token_name: str | None = None

    @property
    def can_write(self) -> bool:
        return self.role == "write"


ANONYMOUS = User(None)


class Authenticator:
    """Maps the ``Authorization: Bearer`` header of a request to a :class:`User`."""

    def __init__(self, tokens: Sequence[Token]):
        self.tokens = list(tokens)

    @property
    def open(self) -> bool:
        return not self.tokens

    def user(self, authorization: str | None) -> User:
        if self.open:
            return User(OPEN_USER, "write", "open")
        scheme, _, secret = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secret:
            return ANONYMOUS
        for token in self.tokens:
            if hmac.compare_digest(token.token.encode(), secret.strip().encode()):
                return User(token.name, token.role, token.name)
        return ANONYMOUS
