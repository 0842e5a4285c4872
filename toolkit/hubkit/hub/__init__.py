"""A local, Hub-compatible server: repos on disk behind the Hugging Face Hub HTTP API.

Point ``HF_ENDPOINT`` at it (and set ``HF_HUB_DISABLE_XET=1``) and the stock huggingface_hub,
datasets, transformers and peft clients push and pull as they would on huggingface.co.
Importing this package imports no HF client, so a server can start before they are imported.
"""

from .auth import Token
from .server import LocalHub

__all__ = ["LocalHub", "Token"]
