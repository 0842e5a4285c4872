"""Attention over packed (padding-free) batches without FlashAttention.

TRL's padding-free batches put every example of a batch into one flattened row and mark
where each starts (``cu_seq_lens_q``). FlashAttention's varlen kernel attends within each
example; transformers' ``sdpa`` instead builds a dense block-diagonal mask over the whole
row, so attention costs the square of the *batch's* tokens rather than of each example's,
and packing loses much of what it saves (`tests/benchmarks/bench_train.py`: 1.25-1.6x slower on CPU).

``sdpa_varlen`` runs PyTorch's ``scaled_dot_product_attention`` once per example (causal,
no mask): the same numbers as the dense mask, at the cost padding-free is meant to have, on
any device. Batches that are not packed (evaluation, generation, padded batches) go through
transformers' own ``sdpa`` unchanged, with its usual mask.
"""

from __future__ import annotations

from typing import Any

SDPA_VARLEN = "sdpa_varlen"


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
    """transformers attention interface: one causal SDPA call per packed example.

    Only a causal layer with no sliding window, fed a single flattened row with
    ``cu_seq_lens_q`` (what TRL's padding-free collator sends), takes this path; the mask
    built for it (causal within each example) is then exactly what per-example causal
    attention computes, so it is not needed.
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.get("cu_seq_lens_q")
    if (
        bounds is None
        or query.shape[0] != 1
        or kwargs.get("sliding_window") is not None
        or not getattr(module, "is_causal", True)
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    edges = bounds.tolist()
    parts = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout_p=dropout,
            scale=scaling,
            is_causal=True,
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
