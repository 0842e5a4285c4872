"""Which Hub the stock clients talk to, and whether they may use Xet storage.

huggingface_hub, datasets and transformers read ``HF_ENDPOINT`` and ``HF_HUB_DISABLE_XET``
when they are imported, so ``use_endpoint`` sets the environment and also updates the
constants of any client already imported. Xet is turned off only for a local endpoint
(the local Hub speaks plain LFS); huggingface.co keeps its default upload path.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from urllib.parse import urlsplit

HF_DEFAULT_ENDPOINT = "https://huggingface.co"


def current_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")


def is_local_endpoint(url: str) -> bool:
    """True for loopback hosts (127.0.0.0/8, ::1, localhost): a local Hub, never huggingface.co."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def disable_xet_if_local(url: str) -> None:
    """Turn Xet uploads off when ``url`` is a local Hub (which speaks plain LFS); else no-op."""
    if not is_local_endpoint(url):
        return
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_DISABLE_XET = True


def use_endpoint(url: str | None = None) -> str:
    """Point every HF client in this process (and its children) at ``url``; return it.

    With ``url=None`` the current ``HF_ENDPOINT`` (or huggingface.co) is kept and only the
    Xet switch is brought in line with it.
    """
    endpoint = (url or current_endpoint()).rstrip("/")
    os.environ["HF_ENDPOINT"] = endpoint
    disable_xet_if_local(endpoint)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.ENDPOINT = endpoint
        constants.HUGGINGFACE_CO_URL_TEMPLATE = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        datasets_config.HF_ENDPOINT = endpoint
        datasets_config.HUB_DATASETS_URL = endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}"
    return endpoint
