"""Attention over packed (padding-free) batches without FlashAttention.

TRL's padding-free batches put every example of a batch into one flattened row and mark
where each starts (``cu_seq_lens_q``). FlashAttention's varlen kernel attends within each
example; transformers' ``sdpa`` instead applies a dense block-diagonal mask to the whole
row, so attention costs the square of the *batch's* tokens rather than of each example's,
and packing loses much of what it saves (`tests/benchmarks/bench_train.py`: 1.2-1.6x
slower on CPU).

``sdpa_varlen`` runs PyTorch's ``scaled_dot_product_attention`` once per example (causal,
no mask): the numbers of the dense mask, at the cost of each example's own attention, on
any device. transformers still builds the dense mask once per forward (its mask creation
is shared by every implementation); only the attention layers skip it. Everything that is
not a plain causal packed row (evaluation and generation batches, padding, a KV cache,
sliding windows, soft-capping, attention sinks) goes through transformers' ``sdpa``
unchanged, with that mask.
"""

from __future__ import annotations

from typing import Any

SDPA_VARLEN = "sdpa_varlen"
# Attention options that per-example causal attention does not reproduce.
_NEEDS_THE_MASK = ("softcap", "s_aux", "position_bias", "sliding_window")


def _sliding_window(module: Any) -> Any:
    """The layer's sliding window: on the module, else (models that only mask it) its config's."""
    if hasattr(module, "sliding_window"):
        return module.sliding_window
    return getattr(getattr(module, "config", None), "sliding_window", None)


def _is_plain_packed_row(module: Any, query: Any, key: Any, kwargs: dict[str, Any]) -> bool:
    return (
        kwargs.get("cu_seq_lens_q") is not None
        and query.shape[0] == 1
        and key.shape[2] == query.shape[2]
        and kwargs.get("is_causal", getattr(module, "is_causal", True)) is True
        and all(kwargs.get(name) is None for name in _NEEDS_THE_MASK)
        and _sliding_window(module) is None
    )


def sdpa_varlen_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers attention interface: one causal SDPA call per example of a packed row.

    On a plain causal packed row the mask transformers built is causal within each example,
    which is exactly what per-example causal attention computes, so it is not read.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not _is_plain_packed_row(module, query, key, kwargs):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    edges = kwargs["cu_seq_lens_q"].tolist()
    grouped = query.shape[1] != key.shape[1]
    parts = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout_p=dropout,
            scale=scaling,
            is_causal=True,
            enable_gqa=grouped,
        )
        for start, end in zip(edges[:-1], edges[1:], strict=True)
        if end > start
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def register_sdpa_varlen() -> str:
    """Make ``attn_implementation="sdpa_varlen"`` known to transformers (idempotent); returns the name.

    Its masks are ``sdpa``'s, so whatever falls back to ``sdpa`` gets the mask it expects.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SDPA_VARLEN, sdpa_varlen_forward)
    AttentionMaskInterface.register(SDPA_VARLEN, sdpa_mask)
    return SDPA_VARLEN
