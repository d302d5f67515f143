"""Per-family conversion between Hugging Face checkpoints and the torchtune layout.

One table, ``_FAMILIES``, maps each ``ModelType`` to a ``_Family``: two functions that convert a
(partial) state dict given the model's ``config.json``, and whether its LoRA tensors map one-to-one
onto Hugging Face modules (so PEFT can load them). A family whose decoder is also published inside
a bigger model (Gemma 3's image-text checkpoints) says how to take the decoder out (``Unwrap``).
A new family plugs in by adding a row.
"""

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import torch

from torchtune.models.convert_weights import hf_to_tune, tune_to_hf
from torchtune.models.gemma2._convert_weights import gemma2_hf_to_tune, gemma2_tune_to_hf
from torchtune.models.gemma3._convert_weights import (
    gemma3_decoder_key,
    gemma3_hf_to_tune,
    gemma3_text_config,
    gemma3_tune_to_hf,
    is_gemma3_image_text,
)
from torchtune.models.phi3._convert_weights import phi3_hf_to_tune, phi3_tune_to_hf
from torchtune.models.qwen2._convert_weights import qwen2_hf_to_tune, qwen2_tune_to_hf
from torchtune.training.checkpointing._model_type import ModelType

StateDict = Dict[str, torch.Tensor]
Converter = Callable[[StateDict, Dict[str, Any]], StateDict]


@dataclass(frozen=True)
class Unwrap:
    """How to read the text decoder out of a checkpoint of a bigger model that contains it.

    Args:
        config (Dict[str, Any]): the decoder's own ``config.json`` (that of its ``*ForCausalLM``):
            conversion reads it, and saving writes it, since what is saved is the decoder alone.
        decoder_key (Callable[[str], Optional[str]]): a key of the checkpoint -> the decoder's
            ``*ForCausalLM`` key; None for the parts that are not the decoder (left out on load);
            raises ``KeyError`` for a key that belongs to neither.
        left_out (str): what the left-out keys are, for the log line.
        source (str): what the checkpoint is, for the log line.
    """

    config: Dict[str, Any]
    decoder_key: Callable[[str], Optional[str]]
    left_out: str
    source: str


@dataclass(frozen=True)
class _Family:
    to_tune: Converter
    from_tune: Converter
    # False where HF fuses projections that torchtune keeps apart (LoRA on q_proj has no PEFT twin).
    peft_compatible: bool = True
    # Why not, for the log line of a checkpointer that writes adapter_model.pt only.
    no_peft_reason: str = ""
    # (our module path, config) -> Hugging Face module path, or None where it has no twin (a part of a
    # fused projection). Families without it use the Llama module names (_PEFT_MODULES).
    hf_module: Optional[Callable[[str, Dict[str, Any]], Optional[str]]] = None
    # config.json -> how to take the decoder out of a checkpoint that wraps it, or None where the
    # checkpoint is the decoder's own layout.
    unwrap: Optional[Callable[[Dict[str, Any]], Optional[Unwrap]]] = None


def head_dims(config: Dict[str, Any]) -> Dict[str, int]:
    """Head counts and sizes from a Hugging Face ``config.json`` dict.

    Args:
        config (Dict[str, Any]): parsed config.json.

    Returns:
        Dict[str, int]: ``num_heads``, ``num_kv_heads``, ``dim`` and ``head_dim``.

    Raises:
        ValueError: if ``num_attention_heads`` or ``hidden_size`` is missing.
    """
    for field in ("num_attention_heads", "hidden_size"):
        if config.get(field) is None:
            raise ValueError(f"config.json has no {field!r}; it is needed to convert the q/k projections")
    num_heads = int(config["num_attention_heads"])
    dim = int(config["hidden_size"])
    num_kv_heads = int(config.get("num_key_value_heads") or num_heads)
    head_dim = int(config.get("head_dim") or dim // num_heads)
    return dict(num_heads=num_heads, num_kv_heads=num_kv_heads, dim=dim, head_dim=head_dim)


# ---- Llama-style families: rename keys, permute q/k rows to the interleaved RoPE layout ----

def _llama_to_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    return hf_to_tune(sd, **head_dims(config))


def _llama_from_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    return tune_to_hf(sd, **head_dims(config))


# ---- Reward / classifier models: the Llama layout with HF's ``score`` head as our ``output`` ----

def _reward_to_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    # TRL can save a bias on the head; our heads have none (as transformers' score layer).
    renamed = {("lm_head.weight" if k == "score.weight" else k): v for k, v in sd.items() if k != "score.bias"}
    return hf_to_tune(renamed, **head_dims(config))


def _reward_from_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    hf_sd = tune_to_hf(sd, **head_dims(config))
    return {("score.weight" if k == "lm_head.weight" else k): v for k, v in hf_sd.items()}


# ---- Families that keep HF's rotate-half q/k rows: their own packages convert the keys ----
# Qwen2, Qwen2.5 and Qwen3 only rename keys (torchtune.models.qwen2.qwen2_hf_to_tune / qwen2_tune_to_hf).

def _qwen2_to_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    # Qwen2 checkpoints carry a window size with ``use_sliding_window: false``; a checkpoint that
    # enables it (windows on the layers from ``max_window_layers`` on) is not built by qwen2().
    if config.get("use_sliding_window"):
        raise ValueError("config.json sets use_sliding_window: true, which the Qwen builders do not support")
    return qwen2_hf_to_tune(sd)


def _qwen2_from_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    return qwen2_tune_to_hf(sd)


# Phi-3 / Phi-4: HF fuses qkv_proj and gate_up_proj; the public converters split and fuse them.

def _phi3_to_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    dims = head_dims(config)
    return phi3_hf_to_tune(sd, num_heads=dims["num_heads"], num_kv_heads=dims["num_kv_heads"], dim=dims["dim"])


def _phi3_from_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    return phi3_tune_to_hf(sd)


# Any decoder hf_decoder builds: the names follow config.json's model_type, both ways from one table.

def _hf_decoder_to_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    from torchtune.models._hf_decoder import hf_to_tune  # the models package imports this module

    return hf_to_tune(sd, config)


def _hf_decoder_from_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    from torchtune.models._hf_decoder import tune_to_hf

    return tune_to_hf(sd, config)


def _hf_decoder_module(module: str, config: Dict[str, Any]) -> Optional[str]:
    from torchtune.models._hf_decoder import hf_module_name

    try:
        return hf_module_name(module, config)
    except ValueError:
        return None


# Gemma 2: its own norm names (post_attention_layernorm is the attention output's norm), Llama's
# q/k permutation. Gemma 3: those names plus q/k norms, rotate-half rows kept (rename only).

def _gemma2_to_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    return gemma2_hf_to_tune(sd, **head_dims(config))


def _gemma2_from_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    return gemma2_tune_to_hf(sd, **head_dims(config))


def _gemma3_to_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    return gemma3_hf_to_tune(sd)


def _gemma3_from_tune(sd: StateDict, config: Dict[str, Any]) -> StateDict:
    return gemma3_tune_to_hf(sd)


def _gemma3_unwrap(config: Dict[str, Any]) -> Optional[Unwrap]:
    # 4B-27B: Gemma3ForConditionalGeneration; the text decoder is what the gemma3 builders build.
    if not is_gemma3_image_text(config):
        return None
    return Unwrap(gemma3_text_config(config), gemma3_decoder_key,
                  left_out="the vision tower and multi-modal projector (vision_tower.*, multi_modal_projector.*)",
                  source="Gemma3ForConditionalGeneration (image-text)")


_LLAMA = _Family(_llama_to_tune, _llama_from_tune)
_QWEN2 = _Family(_qwen2_to_tune, _qwen2_from_tune)
_PHI3 = _Family(
    _phi3_to_tune, _phi3_from_tune, peft_compatible=False,
    no_peft_reason="fuses q/k/v and gate/up projections in Hugging Face format, so PEFT has no module for a LoRA "
    "on q_proj or w1",
)
_FAMILIES: Dict[ModelType, _Family] = {
    ModelType.LLAMA2: _LLAMA,
    ModelType.LLAMA3: _LLAMA,
    ModelType.LLAMA3_2: _LLAMA,
    ModelType.MISTRAL: _LLAMA,
    ModelType.GEMMA: _LLAMA,  # Llama's keys and q/k permutation, with head_dim from config.json
    ModelType.GEMMA2: _Family(_gemma2_to_tune, _gemma2_from_tune),
    ModelType.GEMMA3: _Family(_gemma3_to_tune, _gemma3_from_tune, unwrap=_gemma3_unwrap),
    ModelType.QWEN2: _QWEN2,
    ModelType.QWEN3: _QWEN2,  # Qwen2's keys plus the per-head q/k norms, same RoPE layout
    ModelType.PHI3_MINI: _PHI3,
    ModelType.PHI4: _PHI3,  # Phi-4 is stored as Phi3ForCausalLM: same fused projections
    # PEFT module names follow each architecture's name table; fused projections have none.
    ModelType.HF_DECODER: _Family(_hf_decoder_to_tune, _hf_decoder_from_tune, hf_module=_hf_decoder_module),
    # LlamaForSequenceClassification / MistralForSequenceClassification. PEFT's adapter layout
    # targets a causal LM (lm_head, task CAUSAL_LM), so only adapter_model.pt is written.
    ModelType.REWARD: _Family(
        _reward_to_tune, _reward_from_tune, peft_compatible=False,
        no_peft_reason="is a sequence-classification model, and PEFT's adapter layout targets a causal LM",
    ),
}


def get_family(model_type: ModelType) -> _Family:
    """Conversion functions for ``model_type``.

    Raises:
        ValueError: if the family has no conversion registered.
    """
    if model_type not in _FAMILIES:
        valid = ", ".join(m.name for m in _FAMILIES)
        raise ValueError(
            f"model_type {model_type.name} has no Hugging Face checkpoint conversion yet. Supported: {valid}"
        )
    return _FAMILIES[model_type]


# ---- LoRA / DoRA adapters in the PEFT layout ----

# torchtune module path -> HF module path; also maps config target_modules (last component).
_PEFT_MODULES = {
    "attn.q_proj": "self_attn.q_proj",
    "attn.k_proj": "self_attn.k_proj",
    "attn.v_proj": "self_attn.v_proj",
    "attn.output_proj": "self_attn.o_proj",
    "mlp.w1": "mlp.gate_proj",
    "mlp.w2": "mlp.down_proj",
    "mlp.w3": "mlp.up_proj",
}
TUNE_TO_PEFT_TARGET = {k.split(".")[-1]: v.split(".")[-1] for k, v in _PEFT_MODULES.items()}
TUNE_TO_PEFT_TARGET["output"] = "lm_head"

_ADAPTER_KEY = re.compile(r"^(?:layers\.(\d+)\.(.+)|(output))\.(lora_a\.weight|lora_b\.weight|magnitude)$")
_PEFT_SUFFIX = {"lora_a.weight": "lora_A.weight", "lora_b.weight": "lora_B.weight", "magnitude": "lora_magnitude_vector"}


def peft_module_path(tune_module: str, family: _Family, config: Dict[str, Any]) -> Optional[str]:
    """Hugging Face module path (``model.layers.0.self_attn.q_proj``) of one of ours (``layers.0.attn.q_proj``).

    Returns:
        Optional[str]: the path, or None if the module has no one-to-one twin in ``family``'s checkpoints.
    """
    if family.hf_module is not None:
        return family.hf_module(tune_module, config)
    if tune_module == "output":
        return "lm_head"
    layer, module = tune_module.split(".", 2)[1:]
    return f"model.layers.{layer}.{_PEFT_MODULES[module]}" if module in _PEFT_MODULES else None


def adapter_to_peft(adapter: StateDict, family: _Family, config: Dict[str, Any]) -> StateDict:
    """torchtune LoRA/DoRA tensors -> PEFT keys, with q/k rows in the HF layout.

    ``lora_b`` rows and DoRA magnitudes index output features, so they get the same row
    permutation as the wrapped weight; ``lora_a`` rows index the rank and are left alone.

    Args:
        adapter (StateDict): keys like ``layers.0.attn.q_proj.lora_a.weight`` ([r, in]),
            ``...lora_b.weight`` ([out, r]), ``...magnitude`` ([out]).
        family (_Family): conversion of the model family.
        config (Dict[str, Any]): parsed config.json.

    Returns:
        StateDict: keys like ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``.

    Raises:
        ValueError: on a key that is not a LoRA/DoRA parameter of a supported module.
    """
    out = {}
    for key, value in adapter.items():
        match = _ADAPTER_KEY.match(key)
        module = None if match is None else match.group(2)
        if match is None or (module is not None and family.hf_module is None and module not in _PEFT_MODULES):
            raise ValueError(
                f"Adapter key {key!r} is not a LoRA/DoRA parameter of "
                f"{sorted(_PEFT_MODULES) + ['output']}"
            )
        layer, _, _, suffix = match.groups()
        tune_base = "output" if layer is None else f"layers.{layer}.{module}"
        hf_base = peft_module_path(tune_base, family, config)
        if hf_base is None:
            raise ValueError(f"Adapter key {key!r}: {tune_base} has no one-to-one Hugging Face module")
        if suffix != "lora_a.weight":
            # Row permutation exactly as for the wrapped weight (identity where the family has none).
            (value,) = family.from_tune({f"{tune_base}.weight": value}, config).values()
        out[f"base_model.model.{hf_base}.{_PEFT_SUFFIX[suffix]}"] = value
    return out


def peft_adapter_config(
    adapter: StateDict, adapter_config: Dict[str, Any], base_model_name_or_path: str,
    module_path: Optional[Callable[[str], Optional[str]]] = None,
) -> Dict[str, Any]:
    """Build PEFT's ``adapter_config.json`` content from torchtune's adapter config.

    ``target_modules`` is taken from the adapter's keys (what was really trained); names in
    ``adapter_config["target_modules"]`` are checked so that a typo raises instead of being ignored.

    Args:
        adapter (StateDict): torchtune-layout adapter tensors.
        adapter_config (Dict[str, Any]): ``r`` (or ``rank``), ``lora_alpha`` (or ``alpha``), optional
            ``target_modules`` (torchtune names), ``peft_type`` ("LORA") and ``use_dora``.
        base_model_name_or_path (str): where the base model lives.
        module_path (Optional[Callable[[str], Optional[str]]]): our module path -> the Hugging
            Face one, whose last component is PEFT's target name. Default: the Llama names.

    Returns:
        Dict[str, Any]: the JSON-ready PEFT config.

    Raises:
        ValueError: on a missing alpha, an unknown target module, a non-LoRA peft_type, or ranks
            that differ between modules.
    """
    peft_type = str(adapter_config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise ValueError(f"adapter_config peft_type {peft_type!r} is not supported; expected 'LORA'")
    for name in adapter_config.get("target_modules") or []:
        if name not in TUNE_TO_PEFT_TARGET:
            raise ValueError(f"adapter_config target_modules has {name!r}; valid: {sorted(TUNE_TO_PEFT_TARGET)}")
    alpha = adapter_config.get("lora_alpha", adapter_config.get("alpha"))
    if alpha is None:
        raise ValueError("adapter_config has no 'lora_alpha' (or 'alpha'); PEFT needs it to scale the update")
    ranks = {v.shape[0] for k, v in adapter.items() if k.endswith("lora_a.weight")}
    rank = adapter_config.get("r", adapter_config.get("rank"))
    if rank is None and len(ranks) == 1:
        rank = ranks.pop()
    if rank is None or ranks - {int(rank)}:
        raise ValueError(f"adapter ranks {sorted(ranks)} do not match adapter_config r={rank}")
    targets: List[str] = []
    for key in adapter:
        match = _ADAPTER_KEY.match(key)
        name = "output" if match.group(3) else match.group(2).split(".")[-1]
        if module_path is None:
            target = TUNE_TO_PEFT_TARGET[name]
        else:
            target = module_path("output" if match.group(3) else f"layers.{match.group(1)}.{match.group(2)}")
            target = target.split(".")[-1]
        if target not in targets:
            targets.append(target)
    use_dora = bool(adapter_config.get("use_dora")) or any(k.endswith(".magnitude") for k in adapter)
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model_name_or_path,
        "r": int(rank),
        "lora_alpha": float(alpha),
        "lora_dropout": float(adapter_config.get("lora_dropout", 0.0)),
        "target_modules": sorted(targets),
        "use_dora": use_dora,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
