"""Test set-up: a private HF_HOME, Xet off, and one local Hub for the whole session.

The Hub clients read HF_ENDPOINT and HF_HUB_DISABLE_XET when they are imported, so both
are set here, before any test module imports them; the server itself starts on first use.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hub_helpers import free_port

_TMP = Path(tempfile.mkdtemp(prefix="hubkit-tests-"))
atexit.register(shutil.rmtree, _TMP, True)
WRITE_TOKEN = "hf_TestWriterToken0000000000000000000"
READ_TOKEN = "hf_TestReaderToken0000000000000000000"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_PORT = free_port()
os.environ.update(
    HF_HOME=str(_TMP / "hf_home"),
    HUBKIT_CACHE=str(_TMP / "hubkit_cache"),
    HF_ENDPOINT=f"http://127.0.0.1:{_PORT}",
    HF_HUB_DISABLE_XET="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    HF_TOKEN=WRITE_TOKEN,
    TOKENIZERS_PARALLELISM="false",
    TRANSFORMERS_VERBOSITY="error",
)
os.environ.pop("HF_HUB_OFFLINE", None)


@pytest.fixture(scope="session")
def local_hub():
    """The session's local Hub (writer: alice, reader: bob; both in the organisation 'hubkit', where
    the tiny recipe publishes), at HF_ENDPOINT."""
    from hubkit.hub import LocalHub, Token

    tokens = [Token("alice", WRITE_TOKEN, "write"), Token("bob", READ_TOKEN, "read")]
    with LocalHub(_TMP / "hub", port=_PORT, tokens=tokens, orgs={"hubkit": ["alice", "bob"]}) as hub:
        yield hub


@pytest.fixture(scope="session")
def write_token() -> str:
    return WRITE_TOKEN


@pytest.fixture(scope="session")
def read_token() -> str:
    return READ_TOKEN


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real benchmark and training data beside the checkout (see ../shared/README.md)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found")
    return SHARED


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A seeded tiny Llama (2 layers, hidden 64) + BPE tokenizer, saved in 4+ safetensors shards."""
    from hubkit.tiny import build_tiny_llama, sample_corpus

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), sample_corpus(), max_shard_size="100KB")
