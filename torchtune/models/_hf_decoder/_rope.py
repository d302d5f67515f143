"""Rotary embeddings as Hugging Face ``config.json`` describes them: partial rotation and scaling types.

The frequencies of each ``rope_type`` (``default``, ``linear``, ``dynamic``, ``yarn``, ``llama3``,
``longrope``) are computed from the published formulas; the parity tests check them against
transformers on the same configs.
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

SUPPORTED_ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3", "longrope")
_NOT_CACHED = object()


@dataclass(frozen=True)
class RopeSpec:
    """The RoPE settings of a checkpoint.

    Attributes:
        rotary_dim (int): channels of each head that are rotated (even); the rest pass unchanged.
        base (float): ``rope_theta``.
        rope_type (str): one of ``SUPPORTED_ROPE_TYPES``.
        max_position_embeddings (int): ``config.json``'s ``max_position_embeddings``.
        params (Dict[str, Any]): the scaling parameters (``factor``, ``low_freq_factor``, ...).
    """

    rotary_dim: int
    base: float
    rope_type: str = "default"
    max_position_embeddings: int = 2048
    params: Dict[str, Any] = field(default_factory=dict)

    @property
    def original_max_position_embeddings(self) -> int:
        return int(self.params.get("original_max_position_embeddings") or self.max_position_embeddings)


def _exponents(dim: int) -> torch.Tensor:
    return torch.arange(0, dim, 2, dtype=torch.int64).float() / dim


def rope_frequencies(spec: RopeSpec, seq_len: Optional[int] = None) -> Tuple[torch.Tensor, float]:
    """Inverse frequencies ``[rotary_dim // 2]`` and the cos/sin scale of ``spec``.

    Args:
        spec (RopeSpec): the RoPE settings.
        seq_len (Optional[int]): longest position + 1 of the current call; only ``dynamic`` and
            ``longrope`` depend on it (they change beyond the pretraining length). Default None.

    Returns:
        Tuple[torch.Tensor, float]: ``inv_freq`` (fp32) and the factor applied to cos and sin.

    Raises:
        ValueError: if ``rope_type`` is not supported, or a parameter it needs is missing.
    """
    dim, base, p = spec.rotary_dim, float(spec.base), spec.params
    kind = spec.rope_type
    try:
        if kind == "default":
            return 1.0 / base ** _exponents(dim), 1.0
        if kind == "linear":
            return 1.0 / base ** _exponents(dim) / float(p["factor"]), 1.0
        if kind == "dynamic":
            # NTK-aware: the base grows with the sequence once it passes the pretraining length.
            length = max(seq_len or 0, spec.max_position_embeddings)
            factor = float(p["factor"])
            grown = base * ((factor * length / spec.max_position_embeddings) - (factor - 1)) ** (dim / (dim - 2))
            return 1.0 / grown ** _exponents(dim), 1.0
        if kind == "llama3":
            return _llama3_frequencies(dim, base, p), 1.0
        if kind == "yarn":
            return _yarn_frequencies(spec)
        if kind == "longrope":
            return _longrope_frequencies(spec, seq_len)
    except KeyError as missing:
        raise ValueError(f"rope_scaling of type {kind!r} needs the key {missing.args[0]!r}") from None
    raise ValueError(f"rope_scaling type {kind!r} is not supported; supported: {', '.join(SUPPORTED_ROPE_TYPES)}")


def _llama3_frequencies(dim: int, base: float, p: Dict[str, Any]) -> torch.Tensor:
    # Long wavelengths are slowed by ``factor``, short ones kept, the band between blended.
    inv_freq = 1.0 / base ** _exponents(dim)
    factor, low, high = float(p["factor"]), float(p["low_freq_factor"]), float(p["high_freq_factor"])
    context = float(p["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    blend = ((context / wavelen - low) / (high - low)).clamp(0.0, 1.0)
    scaled = (1 - blend) * inv_freq / factor + blend * inv_freq
    return torch.where(wavelen > context / low, inv_freq / factor, torch.where(wavelen < context / high, inv_freq, scaled))


def _yarn_frequencies(spec: RopeSpec) -> Tuple[torch.Tensor, float]:
    dim, base, p = spec.rotary_dim, float(spec.base), spec.params
    original = spec.original_max_position_embeddings
    factor = p.get("factor")
    factor = float(spec.max_position_embeddings / original if factor is None else factor)

    def mscale(scale: float, weight: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * weight * math.log(scale) + 1.0

    attention_factor = p.get("attention_factor")
    if attention_factor is None:
        if p.get("mscale") and p.get("mscale_all_dim"):
            attention_factor = mscale(factor, p["mscale"]) / mscale(factor, p["mscale_all_dim"])
        else:
            attention_factor = mscale(factor)

    def channel_of(rotations: float) -> float:
        # The channel whose wavelength fits ``rotations`` turns into the pretraining context.
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = channel_of(p.get("beta_fast") or 32), channel_of(p.get("beta_slow") or 1)
    if p.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolate = 1 - ramp  # 1: keep the original frequency, 0: interpolate by ``factor``
    freqs = base ** _exponents(dim)
    inv_freq = (1.0 / (factor * freqs)) * (1 - extrapolate) + (1.0 / freqs) * extrapolate
    return inv_freq, float(attention_factor)


def _longrope_frequencies(spec: RopeSpec, seq_len: Optional[int]) -> Tuple[torch.Tensor, float]:
    p, original = spec.params, spec.original_max_position_embeddings
    factor = p.get("factor")
    factor = float(spec.max_position_embeddings / original if factor is None else factor)
    attention_factor = p.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    rescale = p["long_factor"] if seq_len is not None and seq_len > original else p["short_factor"]
    rescale = torch.tensor(rescale, dtype=torch.float32)
    return 1.0 / (rescale * float(spec.base) ** _exponents(spec.rotary_dim)), float(attention_factor)


class HFRotaryEmbeddings(nn.Module):
    """Rotary embeddings in Hugging Face's rotate-half layout, over the first ``rotary_dim`` channels.

    Channel ``i < rotary_dim // 2`` is paired with ``i + rotary_dim // 2``; channels from
    ``rotary_dim`` on pass through unchanged (partial rotary, as in GPT-NeoX, Phi-2 and StableLM).
    Checkpoints keep their q/k row order, so weights load without a permutation.

    Args:
        head_dim (int): channels per head.
        spec (RopeSpec): frequencies and scaling.
        max_seq_len (int): positions cached. Default 4096.

    Raises:
        ValueError: if ``rotary_dim`` is odd, zero or larger than ``head_dim``.
    """

    def __init__(self, head_dim: int, spec: RopeSpec, max_seq_len: int = 4096) -> None:
        super().__init__()
        if spec.rotary_dim % 2 or not 0 < spec.rotary_dim <= head_dim:
            raise ValueError(f"rotary dims ({spec.rotary_dim}) must be even and in (0, head_dim={head_dim}]")
        self.head_dim = head_dim
        self.spec = spec
        self.max_seq_len = max_seq_len
        self.rope_init()

    def rope_init(self) -> None:
        """(Re)compute the cache, e.g. after the module left the meta device."""
        self._regime_cached = _NOT_CACHED  # also after a move off the meta device: recompute
        self._set_cache(self.max_seq_len)

    def _regime(self, seq_len: int) -> Any:
        # ``longrope`` switches factor sets past the pretraining length; ``dynamic`` regrows its
        # base for every longer sequence; the other types do not depend on the length.
        if self.spec.rope_type == "longrope":
            return seq_len > self.spec.original_max_position_embeddings
        if self.spec.rope_type == "dynamic":
            return seq_len if seq_len > self.spec.max_position_embeddings else 0
        return None

    def _set_cache(self, seq_len: int) -> None:
        regime = self._regime(seq_len)
        if regime == self._regime_cached and getattr(self, "cos", None) is not None and len(self.cos) >= seq_len:
            return
        inv_freq, scale = rope_frequencies(self.spec, seq_len)
        angles = torch.outer(torch.arange(max(seq_len, self.max_seq_len), dtype=torch.float32), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)  # [s, rotary_dim]: both halves share an angle
        self.register_buffer("cos", angles.cos() * scale, persistent=False)
        self.register_buffer("sin", angles.sin() * scale, persistent=False)
        self._regime_cached = regime

    def forward(self, x: torch.Tensor, *, input_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): queries or keys ``[b, s, n_h, h_d]``.
            input_pos (Optional[torch.Tensor]): positions ``[b, s]`` or ``[s]``; ``arange(s)`` if None.

        Returns:
            torch.Tensor: ``[b, s, n_h, h_d]`` in the dtype of ``x``.
        """
        s = x.shape[1]
        longest = s if input_pos is None else int(input_pos.max()) + 1
        self._set_cache(longest)
        if input_pos is None:
            cos, sin = self.cos[:s], self.sin[:s]  # [s, r]
            cos, sin = cos[None, :, None], sin[None, :, None]
        else:
            pos = input_pos if input_pos.dim() == 2 else input_pos[None]
            cos, sin = self.cos[pos][:, :, None], self.sin[pos][:, :, None]  # [b, s, 1, r]
        r = self.spec.rotary_dim
        rot, rest = x[..., :r].float(), x[..., r:]
        half = r // 2
        turned = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
        out = (rot * cos.to(rot.device) + turned * sin.to(rot.device)).to(x.dtype)
        return torch.cat([out, rest], dim=-1) if rest.shape[-1] else out
