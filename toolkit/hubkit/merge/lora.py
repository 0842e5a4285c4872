"""A saved peft LoRA adapter as base-weight deltas: ``W += B·A·scaling`` per target tensor.

The adapter is small, so it is read whole; each update is applied in fp32 only when its
base tensor streams past. Anything that cannot be folded into plain weights exactly is
refused up front, by name, rather than merged approximately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import read_json
from ..errors import HubkitError
from .checkpoint import Checkpoint

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."

# peft options whose adapters are not plain low-rank deltas on existing weights.
UNSUPPORTED = {
    "use_dora": "DoRA (its magnitude vectors rescale whole weight columns)",
    "modules_to_save": "modules_to_save (fully trained copies of modules, not deltas)",
    "trainable_token_indices": "trainable_token_indices (new token embeddings)",
    "layer_replication": "layer_replication (it changes the layer count)",
    "lora_bias": "lora_bias (a bias on lora_B)",
    "target_parameters": "target_parameters (LoRA on raw parameters)",
    "alora_invocation_tokens": "activated LoRA (it applies only after invocation tokens)",
    "use_qalora": "QA-LoRA",
    "use_bdlora": "block-diagonal LoRA",
}
# init_lora_weights values that rewrite the base weights at init: the saved adapter alone
# no longer describes the change (peft can convert such adapters to plain LoRA on save).
BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")


@dataclass(frozen=True)
class LoraTarget:
    """One base tensor's low-rank update."""

    a_key: str
    b_key: str
    scaling: float
    transpose: bool  # embeddings and fan_in_fan_out (Conv1D) layers store W transposed to B·A


class LoraAdapter:
    """A peft LoRA adapter folder, checked and mapped onto base tensor names."""

    def __init__(self, folder: str | Path, name: str | None = None) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        self.folder = Path(folder)
        self.name = name or str(folder)
        self.config: dict[str, Any] = read_json(self.folder / ADAPTER_CONFIG)
        self._check_config()
        weights = self.folder / ADAPTER_WEIGHTS
        if not weights.is_file():
            raise HubkitError(f"{self.name}: {ADAPTER_WEIGHTS} missing in {self.folder}")
        try:
            self.tensors = load_file(weights)
        except (SafetensorError, OSError) as exc:
            raise HubkitError(f"{weights}: not a readable safetensors file ({exc})") from None
        self.targets, self.replacements = self._map_keys()

    @property
    def base_model(self) -> str | None:
        return self.config.get("base_model_name_or_path")

    def _check_config(self) -> None:
        if self.config.get("peft_type") != "LORA":
            raise HubkitError(f"{self.name}: peft_type {self.config.get('peft_type')!r}; only LoRA merges")
        for key, what in UNSUPPORTED.items():
            if self.config.get(key):
                raise HubkitError(f"{self.name}: {ADAPTER_CONFIG} uses {what}; hubkit cannot merge it")
        init = self.config.get("init_lora_weights")
        if isinstance(init, str) and init.lower().startswith(BASE_REWRITING_INITS):
            raise HubkitError(
                f"{self.name}: init_lora_weights={init!r} rewrote the base weights; save the adapter with "
                "peft's path_initial_model_for_weight_conversion to make it a plain LoRA first"
            )

    def _scaling(self, module: str, rank: int) -> float:
        """alpha/r (alpha/sqrt(r) with rsLoRA); r is the saved A's rank, so rank_pattern needs nothing."""
        alpha = self.config["lora_alpha"]
        patterns = self.config.get("alpha_pattern") or {}
        if patterns:  # peft's own matcher, imported only here: peft pulls in transformers
            from peft.utils.other import get_pattern_key

            alpha = patterns.get(get_pattern_key(patterns.keys(), module), alpha)
        return alpha / math.sqrt(rank) if self.config.get("use_rslora") else alpha / rank

    def _map_keys(self) -> tuple[dict[str, LoraTarget], dict[str, str]]:
        """Base tensor name -> its LoRA update, and -> the adapter tensor that replaces it.

        peft saves ``base_model.model.<module>.lora_A.weight`` / ``lora_B.weight`` for linear
        layers and ``<module>.lora_embedding_A`` / ``_B`` for embeddings; a ``base_layer``
        tensor (an embedding saved whole, a trained bias) replaces the base's.
        """
        targets: dict[str, LoraTarget] = {}
        replacements: dict[str, str] = {}
        fan_in_fan_out = bool(self.config.get("fan_in_fan_out"))
        for key in self.tensors:
            if not key.startswith(PREFIX):
                raise HubkitError(f"{self.name}: adapter tensor {key} does not start with {PREFIX!r}")
            rest = key[len(PREFIX) :]
            for a_suffix, b_suffix, transpose in (
                (".lora_A.weight", ".lora_B.weight", fan_in_fan_out),
                (".lora_embedding_A", ".lora_embedding_B", True),
            ):
                if rest.endswith(a_suffix):
                    module = rest[: -len(a_suffix)]
                    b_key = PREFIX + module + b_suffix
                    if b_key not in self.tensors:
                        raise HubkitError(f"{self.name}: {key} has no matching {b_key}")
                    if self.tensors[key].ndim != 2:
                        raise HubkitError(f"{self.name}: {key} is not a 2-D LoRA matrix (conv LoRA)")
                    rank = self.tensors[key].shape[0]
                    targets[module + ".weight"] = LoraTarget(
                        key, b_key, self._scaling(module, rank), transpose
                    )
                    break
            else:
                if ".lora_" in rest:
                    if not rest.endswith((".lora_B.weight", ".lora_embedding_B")):
                        raise HubkitError(f"{self.name}: unsupported adapter tensor {key}")
                    continue
                replacements[rest.replace(".base_layer.", ".")] = key
        return targets, replacements

    def touched(self) -> set[str]:
        """Base tensors this adapter changes; every other tensor must merge bit-identical."""
        return set(self.targets) | set(self.replacements)

    def delta_shape(self, name: str) -> tuple[int, ...]:
        target = self.targets[name]
        rows, cols = self.tensors[target.b_key].shape[0], self.tensors[target.a_key].shape[1]
        return (cols, rows) if target.transpose else (rows, cols)

    def check_against(self, base: Checkpoint) -> None:
        """Refuse before writing anything if a target is missing from the base or has another shape."""
        for name in sorted(self.touched()):
            info = base.tensors.get(name)
            if info is None:
                raise HubkitError(f"{self.name}: adapter targets {name}, which {base.name} does not have")
            if name in self.replacements:
                shape = tuple(self.tensors[self.replacements[name]].shape)
                if shape != info.shape:
                    raise HubkitError(
                        f"{self.name}: {self.replacements[name]} has shape {list(shape)}, "
                        f"{base.name} {name} has {list(info.shape)} (resized vocabularies are not supported)"
                    )
            if name in self.targets and self.delta_shape(name) != info.shape:
                raise HubkitError(
                    f"{self.name}: LoRA update of {name} has shape {list(self.delta_shape(name))}, "
                    f"{base.name} has {list(info.shape)}"
                )

    def apply(self, name: str, tensor):
        """``tensor`` with this adapter folded in (in fp32), in the tensor's own dtype.

        ``W + scaling·B·A`` is one in-place ``addmm_`` on an fp32 copy: no delta-sized
        temporaries, and never a write into the source file's memory map.
        """
        import torch

        if name in self.replacements:
            tensor = self.tensors[self.replacements[name]].to(tensor.dtype)
        target = self.targets.get(name)
        if target is None:
            return tensor
        a, b = self.tensors[target.a_key].float(), self.tensors[target.b_key].float()
        merged = tensor.to(torch.float32, copy=True)
        if target.transpose:  # (B·A)^T = A^T·B^T
            merged.addmm_(a.T, b.T, alpha=target.scaling)
        else:
            merged.addmm_(b, a, alpha=target.scaling)
        return merged.to(tensor.dtype)
