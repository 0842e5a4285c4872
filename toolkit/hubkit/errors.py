"""The one exception type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class HubkitError(Exception):
    """A user-facing failure: the message names the field, file or repo at fault.

    Library code raises it for anything the user can fix (bad input, a refused gate,
    an unreachable endpoint); everything else is a bug and keeps its traceback. The subclasses
    below are the failures a caller branches on.
    """


class InputNotFound(HubkitError):
    """A file, folder, model or dataset a command was pointed at does not exist (or cannot be seen)."""


class GateRefused(HubkitError):
    """A gate refused an input: the taint gate, or a dataset without a passing leak certificate."""


class NotVerified(HubkitError):
    """A merged model has no passing equivalence check for its current weights and tokenizer."""


def hub_errors() -> tuple[type[BaseException], ...]:
    """What asking the Hub raises for a cause the user can fix: offline or unreachable (httpx's
    errors and OSError), not found or gated (``HfHubHTTPError``, ``LocalEntryNotFoundError``), a
    malformed repo id (``HFValidationError``). Anything else is a bug and keeps its traceback."""
    from huggingface_hub.errors import HFValidationError, HTTPError

    return (HTTPError, OSError, HFValidationError)


def dataset_errors() -> tuple[type[BaseException], ...]:
    """``hub_errors`` and what ``datasets.load_dataset`` adds: its own errors and ValueError for
    an unknown config or split."""
    from datasets.exceptions import DatasetsError

    return (*hub_errors(), DatasetsError, ValueError)


def field_path(loc: tuple[str | int, ...], *, brackets: bool = False) -> str:
    """A pydantic error location as a dotted name; ``brackets`` writes list indexes as ``[i]``."""
    out = ""
    for part in loc:
        if isinstance(part, int) and brackets:
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def format_validation_error(
    exc: ValidationError, source: str, *, noun: str = "key", prefix: str = "", needed_by: str = ""
) -> str:
    """The first error of ``exc`` as one line naming ``source`` and the key (or field) at fault.

    Recipes call their entries keys (``data.sources.0.path``); artifact files call them fields
    (``sources[0].license``), with ``prefix`` for a part read on its own and ``needed_by`` for
    the reader that needs them (``the adapter card``).
    """
    err = exc.errors()[0]
    key = prefix + field_path(err["loc"], brackets=noun == "field")
    need = f" needed by {needed_by}" if needed_by else ""
    if not key:
        return f"{source}: {err['ctx']['error'] if err['type'] == 'value_error' else err['msg']}"
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown {noun} '{key}'"
    if err["type"] == "missing":
        return f"{source}: missing {'required key' if noun == 'key' else 'field'} '{key}'{need}"
    if err["type"] == "value_error":  # a validator's own message; pydantic prefixes "Value error, "
        return f"{source}: {key}: {err['ctx']['error']}"
    if noun == "field":
        return f"{source}: field '{key}'{need}: {err['msg']}"
    return f"{source}: {key}: {err['msg']}"
