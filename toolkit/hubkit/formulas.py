"""The model-merge formulas, written from their papers, for the verification's recomputation.

mergekit runs TIES, DARE, SLERP and the rest; ``hubkit verify merge`` recomputes sampled
tensors of its output with these functions, which share no code with mergekit, so a wrong
merge (an engine bug, a tensor changed afterwards) shows as a difference. Each takes the
resolved settings of one tensor (``Settings``), the base tensor (or None) and the other
models' tensors in the configuration's order, and returns the merged tensor in fp32.

DARE's masks are random: mergekit draws them with torch's global generator, and hubkit seeds
it per tensor (``tensor_seed``) before each tensor is merged, so the masks can be drawn again
here, one Bernoulli draw of the delta's shape per model, in the configuration's order.
This module imports torch lazily, so the method table can name these functions cheaply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Settings:
    """One tensor's merge parameters, resolved: per other model, then shared."""

    weights: Sequence[float]
    densities: Sequence[float]
    normalize: bool
    rescale: bool
    lam: float = 1.0
    t: float = 0.5
    seed: int | None = None
    name: str = ""


def tensor_seed(seed: int, name: str) -> int:
    """The generator seed for one tensor: a random merge is reproducible tensor by tensor."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


def linear(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """sum(w_i W_i), divided by sum(w_i) when normalized (Model Soups, arXiv 2203.05482).

    Accumulated in place, one input at a time: hubkit's streaming merge runs this formula,
    and its peak memory is a few copies of the largest tensor.
    """
    total = tensors[0].float() * s.weights[0]
    for weight, tensor in zip(s.weights[1:], tensors[1:], strict=True):
        total.add_(tensor.float(), alpha=weight)
    return total.div_(sum(s.weights)) if s.normalize else total


def _top_k(delta: Any, density: float) -> Any:
    """TIES' trim: keep the ``density`` fraction of entries of largest magnitude (at least one)."""
    import torch

    if density >= 1:
        return delta
    flat = delta.flatten()
    keep = torch.zeros_like(flat)
    k = max(1, int(density * flat.numel()))
    keep[flat.abs().argsort(descending=True)[:k]] = 1
    return (flat * keep).reshape(delta.shape)


def _dropped(delta: Any, density: float, rescale: bool, dtype: Any) -> Any:
    """DARE's drop: keep each entry with probability ``density`` and, to keep the delta's L1
    norm, scale the kept ones by |delta|_1 / |kept|_1 (arXiv 2311.03099, as mergekit rescales)."""
    import torch

    if density >= 1:
        return delta
    # drawn as mergekit draws on CPU: in bf16 for bf16 weights, else in fp32
    draw = torch.bfloat16 if dtype == torch.bfloat16 else torch.float32
    kept = delta * torch.bernoulli(torch.full_like(delta, density, dtype=draw)).float()
    before, after = delta.abs().sum(), kept.abs().sum()
    if not rescale or before < 1e-7 or after < 1e-7:
        return kept
    return kept * (before / after)


def _combine(s: Settings, base: Any, deltas: list[Any], consensus: bool) -> Any:
    """base + lambda * (weighted deltas, keeping with ``consensus`` only entries whose sign is
    the sign of their sum), divided by the weights kept when normalized."""
    import torch

    weighted = torch.stack([w * d for w, d in zip(s.weights, deltas, strict=True)])
    weights = torch.tensor(list(s.weights)).reshape(-1, *([1] * deltas[0].dim())).expand_as(weighted)
    if consensus:
        elected = torch.where(weighted.sum(0) >= 0, 1.0, -1.0)
        keep = (weighted.sign() == elected).float()
    else:
        keep = torch.ones_like(weighted)
    merged = (weighted * keep).sum(0)
    if s.normalize:
        divisor = (weights * keep).sum(0)
        merged = merged / torch.where(divisor.abs() < 1e-8, 1.0, divisor)
    return base.float() + s.lam * merged


def task_arithmetic(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """W_base + lambda * sum(w_i (W_i - W_base)) (arXiv 2212.04089), divided by sum(w_i) when
    normalized; accumulated in place, one input at a time, as ``linear``."""
    start = base.float()
    total = None
    for weight, tensor in zip(s.weights, tensors, strict=True):
        delta = tensor.float() - start
        total = delta.mul_(weight) if total is None else total.add_(delta, alpha=weight)
        del delta
    if s.normalize and abs(sum(s.weights)) >= 1e-8:
        total.div_(sum(s.weights))
    return total.mul_(s.lam).add_(start)


def ties(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """TIES (arXiv 2306.01708): trim each delta to its top ``density``, elect signs, disjoint mean."""
    deltas = [_top_k(t.float() - base.float(), d) for t, d in zip(tensors, s.densities, strict=True)]
    return _combine(s, base, deltas, consensus=True)


def _dare(s: Settings, base: Any, tensors: list[Any], consensus: bool) -> Any:
    import torch

    if s.seed is None:
        raise ValueError("a DARE merge is recomputed from its seed; none was recorded")
    torch.manual_seed(tensor_seed(s.seed, s.name))
    deltas = [
        _dropped(t.float() - base.float(), d, s.rescale, t.dtype)
        for t, d in zip(tensors, s.densities, strict=True)
    ]
    return _combine(s, base, deltas, consensus=consensus)


def dare_ties(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """DARE's random drop and rescale, then TIES' sign election."""
    return _dare(s, base, tensors, consensus=True)


def dare_linear(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """DARE's random drop and rescale, then task arithmetic."""
    return _dare(s, base, tensors, consensus=False)


def slerp(s: Settings, base: Any, tensors: list[Any]) -> Any:
    """Spherical interpolation from the base (t=0) to the other model (t=1), over the whole
    tensor as one vector; nearly parallel tensors are interpolated linearly."""
    import torch

    (other,) = tensors
    a, b = base.double().flatten(), other.double().flatten()
    dot = float(torch.dot(a / a.norm().clamp_min(1e-8), b / b.norm().clamp_min(1e-8)).clamp(-1, 1))
    if abs(dot) > 0.9995:
        out = (1 - s.t) * a + s.t * b
    else:
        theta = torch.tensor(dot, dtype=torch.float64).acos()
        out = (torch.sin((1 - s.t) * theta) * a + torch.sin(s.t * theta) * b) / torch.sin(theta)
    return out.reshape(base.shape).float()
