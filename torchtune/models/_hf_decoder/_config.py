"""Reading a Hugging Face ``config.json``: the fields every decoder architecture shares.

Errors name the config file, the key and its value, so an unsupported checkpoint fails in one
line before any weight is read.
"""

import json
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from torch import nn

from torchtune.models._hf_decoder._rope import RopeSpec, SUPPORTED_ROPE_TYPES


class UnsupportedConfigError(ValueError):
    """A ``config.json`` value that the generic decoder builder cannot express."""


class HFConfig(dict):
    """A parsed ``config.json`` that remembers where it came from, for error messages.

    Args:
        values (Dict[str, Any]): the parsed JSON.
        source (str): the file it was read from (or a description).
    """

    def __init__(self, values: Dict[str, Any], source: str = "config.json") -> None:
        super().__init__(values)
        self.source = source

    def unsupported(self, key: str, why: str) -> UnsupportedConfigError:
        """An error naming this file, ``key`` and its value."""
        return UnsupportedConfigError(f"{self.source}: {key}={self.get(key)!r} is not supported: {why}")

    def need(self, key: str) -> Any:
        """The value of a required key.

        Raises:
            UnsupportedConfigError: if it is missing or null.
        """
        if self.get(key) is None:
            raise UnsupportedConfigError(f"{self.source}: the key {key!r} is missing; the decoder needs it")
        return self[key]

    def first(self, *keys: str, default: Any = None) -> Any:
        """The value of the first of ``keys`` that is set (architectures name the same field differently)."""
        for key in keys:
            if self.get(key) is not None:
                return self[key]
        return default


def load_hf_config(path: Union[str, Path]) -> HFConfig:
    """Read ``config.json`` from a checkpoint folder (or the file itself).

    Args:
        path (Union[str, Path]): the folder that holds ``config.json``, or its path.

    Returns:
        HFConfig: the parsed config.

    Raises:
        FileNotFoundError: if there is no ``config.json`` there.
        ValueError: if the file is not a JSON object.
    """
    file = Path(path)
    if file.is_dir():
        file = file / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no config.json there; pass the checkpoint folder downloaded from the Hub")
    try:
        values = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{file}: expected a JSON object, got {type(values).__name__}")
    return HFConfig(values, str(file))


def head_dim_of(config: HFConfig) -> int:
    """Per-head size: ``head_dim`` if given, else ``hidden_size // num_attention_heads``."""
    return int(config.get("head_dim") or int(config.need("hidden_size")) // int(config.need("num_attention_heads")))


def rope_spec(config: HFConfig, head_dim: int, partial_rotary_factor: Optional[float] = None,
              layer_type: Optional[str] = None) -> RopeSpec:
    """The RoPE settings, from ``rope_parameters`` (transformers 5) or ``rope_theta`` + ``rope_scaling``.

    Args:
        config (HFConfig): the config.
        head_dim (int): per-head size.
        partial_rotary_factor (Optional[float]): fraction of each head rotated, where the
            architecture names it differently (``rotary_pct``). Default: the config's
            ``partial_rotary_factor``, else 1.
        layer_type (Optional[str]): for settings given per layer type (Gemma 3:
            ``{"sliding_attention": {...}, "full_attention": {...}}``), the type. Default None.

    Returns:
        RopeSpec: the settings.

    Raises:
        UnsupportedConfigError: for a scaling type outside ``SUPPORTED_ROPE_TYPES``, or per-layer-type
            settings without a ``layer_type`` (or without an entry for it).
    """
    params = dict(config.get("rope_parameters") or {})
    if params and all(isinstance(v, dict) for v in params.values()):
        if layer_type not in params:
            raise config.unsupported("rope_parameters", f"no RoPE settings for layer type {layer_type!r}")
        params = dict(params[layer_type])
    scaling = config.get("rope_scaling") or {}
    params = {**scaling, **params}
    kind = params.get("rope_type") or params.get("type") or "default"
    if kind not in SUPPORTED_ROPE_TYPES:
        key = "rope_parameters" if config.get("rope_parameters") else "rope_scaling"
        raise config.unsupported(key, f"RoPE type {kind!r}; supported: {', '.join(SUPPORTED_ROPE_TYPES)}")
    base = params.get("rope_theta") or config.first("rope_theta", "rotary_emb_base", default=10_000.0)
    fraction = partial_rotary_factor
    if fraction is None:
        fraction = params.get("partial_rotary_factor") or config.get("partial_rotary_factor") or 1.0
    if kind in ("llama3", "yarn", "longrope"):
        # Phi-3 keeps the pretraining length beside the scaling dict, not inside it.
        params.setdefault("original_max_position_embeddings",
                          config.get("original_max_position_embeddings") or config.get("max_position_embeddings"))
    rotary_dim = int(head_dim * float(fraction))
    if rotary_dim % 2:
        raise config.unsupported("partial_rotary_factor", f"it rotates {rotary_dim} of {head_dim} dims, an odd number")
    return RopeSpec(rotary_dim=rotary_dim, base=float(base), rope_type=kind,
                    max_position_embeddings=int(config.get("max_position_embeddings") or 2048), params=params)


def layer_types_of(config: HFConfig, num_layers: int) -> Optional[List[str]]:
    """``layer_types`` (``"full_attention"`` / ``"sliding_attention"`` per layer), checked; None if absent.

    Raises:
        UnsupportedConfigError: for an unknown layer type or a wrong-length list.
    """
    types = config.get("layer_types")
    if types is None:
        return None
    if len(types) != num_layers:
        raise config.unsupported("layer_types", f"it has {len(types)} entries for {num_layers} layers")
    unknown = set(types) - {"full_attention", "sliding_attention"}
    if unknown:
        raise config.unsupported("layer_types", f"layer types {sorted(unknown)}")
    return list(types)


_ACTIVATIONS: Dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    # transformers' "gelu_new" / "gelu_pytorch_tanh" are both the tanh approximation.
    "gelu_new": partial(nn.GELU, approximate="tanh"),
    "gelu_pytorch_tanh": partial(nn.GELU, approximate="tanh"),
    "relu": nn.ReLU,
}


def activation_of(config: HFConfig, key: Optional[str] = None) -> Callable[[], nn.Module]:
    """Builder of the MLP non-linearity named by ``config[key]``; by default ``hidden_activation``
    (Gemma 2/3) or ``hidden_act``.

    Raises:
        UnsupportedConfigError: for an activation we do not have.
    """
    if key is None:
        key = "hidden_activation" if config.get("hidden_activation") else "hidden_act"
    name = config.get(key) or "silu"
    if name not in _ACTIVATIONS:
        raise config.unsupported(key, f"activation; supported: {', '.join(sorted(_ACTIVATIONS))}")
    return _ACTIVATIONS[name]


def layer_windows(config: HFConfig, num_layers: int, default_sliding: bool) -> List[Optional[int]]:
    """Per-layer attention window from ``layer_types`` / ``sliding_window``.

    Args:
        config (HFConfig): the config.
        num_layers (int): layers of the model.
        default_sliding (bool): whether every layer uses ``sliding_window`` when ``layer_types``
            is absent (Mistral, Starcoder2); else none does unless ``use_sliding_window``.

    Returns:
        List[Optional[int]]: the window of each layer (None: global attention).

    Raises:
        UnsupportedConfigError: for an unknown layer type or a wrong-length ``layer_types``.
    """
    window = config.get("sliding_window")
    types = layer_types_of(config, num_layers)
    if types is not None:
        return [window if t == "sliding_attention" and window else None for t in types]
    if window and (default_sliding or config.get("use_sliding_window")):
        first = int(config.get("max_window_layers") or 0) if config.get("use_sliding_window") else 0
        return [window if i >= first else None for i in range(num_layers)]
    return [None] * num_layers
