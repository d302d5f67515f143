"""Llama 3.1's RoPE: the usual rotary embedding with its frequencies stretched for long context."""

import math
from typing import Any, Dict

import torch

from torchtune.modules.position_embeddings import RotaryPositionalEmbeddings


class Llama3ScaledRoPE(RotaryPositionalEmbeddings):
    """Rotary embeddings with Llama 3.1's frequency scaling ("llama3" RoPE scaling).

    The rotation is exactly :class:`~torchtune.modules.RotaryPositionalEmbeddings`' (interleaved
    channel pairs, the layout of Meta checkpoints and torchtune state dicts); only the
    frequencies differ. With ``wavelen = 2 * pi / freq``, a frequency whose wavelength is
    shorter than ``old_context_len / high_freq_factor`` is kept, one longer than
    ``old_context_len / low_freq_factor`` is divided by ``scale_factor``, and those in between
    are interpolated linearly in ``old_context_len / wavelen``. Short-range position information
    is therefore untouched while long wavelengths stretch to the longer context.

    Args:
        dim (int): per-head embedding size (``head_dim``); must be even.
        max_seq_len (int): longest position cached. Default 4096.
        base (int): geometric base of the rotation frequencies. Default 10000.
        scale_factor (int): how much the low frequencies are slowed down. Default 8.
        low_freq_factor (int): ``old_context_len / low_freq_factor`` is the wavelength above
            which frequencies are fully scaled. Default 1.
        high_freq_factor (int): ``old_context_len / high_freq_factor`` is the wavelength below
            which frequencies are kept. Default 4.
        old_context_len (int): context length the model was pre-trained with before the
            extension (Hugging Face's ``original_max_position_embeddings``). Default 8192.

    Raises:
        ValueError: if ``dim`` is odd, or ``high_freq_factor <= low_freq_factor`` (the
            interpolation band would be empty or inverted).
    """

    def __init__(
        self,
        dim: int,
        max_seq_len: int = 4096,
        base: int = 10000,
        scale_factor: int = 8,
        low_freq_factor: int = 1,
        high_freq_factor: int = 4,
        old_context_len: int = 8192,
    ) -> None:
        if high_freq_factor <= low_freq_factor:
            raise ValueError(
                f"high_freq_factor ({high_freq_factor}) must be larger than low_freq_factor ({low_freq_factor})"
            )
        # Read by rope_init, which the parent's constructor calls.
        self.scale_factor = scale_factor
        self.low_freq_factor = low_freq_factor
        self.high_freq_factor = high_freq_factor
        self.old_context_len = old_context_len
        super().__init__(dim=dim, max_seq_len=max_seq_len, base=base)

    def rope_init(self) -> None:
        """Compute the scaled frequencies (buffer ``theta``, ``[dim // 2]``) and the cos/sin cache."""
        freqs = 1.0 / (self.base ** (torch.arange(0, self.dim, 2)[: self.dim // 2].float() / self.dim))
        theta = self.apply_scaling(
            freqs, self.scale_factor, self.low_freq_factor, self.high_freq_factor, self.old_context_len
        )
        self.register_buffer("theta", theta, persistent=False)
        self.build_rope_cache(self.max_seq_len)

    def apply_scaling(
        self,
        freqs: torch.Tensor,
        scale_factor: int,
        low_freq_factor: int,
        high_freq_factor: int,
        old_context_len: int,
    ) -> torch.Tensor:
        """Llama 3.1's frequency scaling.

        Args:
            freqs (torch.Tensor): unscaled rotation frequencies ``[dim // 2]``.
            scale_factor (int): divisor of the low frequencies.
            low_freq_factor (int): see the class docstring.
            high_freq_factor (int): see the class docstring.
            old_context_len (int): pre-training context length.

        Returns:
            torch.Tensor: scaled frequencies, same shape and dtype as ``freqs``.
        """
        wavelen = 2 * math.pi / freqs
        # 0 at the low-frequency edge of the band, 1 at its high-frequency edge.
        smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        interpolated = (1 - smooth) * freqs / scale_factor + smooth * freqs
        scaled = torch.where(wavelen > old_context_len / low_freq_factor, freqs / scale_factor, interpolated)
        return torch.where(wavelen < old_context_len / high_freq_factor, freqs, scaled)


def rope_settings_from_hf_config(config: Dict[str, Any]) -> Dict[str, Any]:
    """RoPE arguments of our Llama 3.x builders from a Hugging Face ``config.json`` dict.

    Both layouts are read: ``rope_theta`` with ``rope_scaling`` (transformers 4) and
    ``rope_parameters`` (transformers 5, which keeps ``rope_theta`` inside it).

    Args:
        config (Dict[str, Any]): parsed config.json.

    Returns:
        Dict[str, Any]: ``rope_base``, plus, for ``rope_type`` ``"llama3"``, ``scale_factor``,
        ``low_freq_factor``, ``high_freq_factor`` and ``old_context_len``. Unscaled RoPE gives
        ``scale_factor=1`` (no scaling), so the result can always be passed to ``llama3_1`` /
        ``llama3_2``.

    Raises:
        ValueError: if no RoPE base is given, or the scaling type is neither default nor llama3.
    """
    params = dict(config.get("rope_parameters") or {})
    params.update({k: v for k, v in (config.get("rope_scaling") or {}).items() if v is not None})
    base = params.get("rope_theta", config.get("rope_theta"))
    if base is None:
        raise ValueError("config.json has no rope_theta (top level or in rope_parameters)")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type == "default":
        return dict(rope_base=float(base), scale_factor=1)
    if rope_type != "llama3":
        raise ValueError(f"RoPE scaling type {rope_type!r} is not Llama 3's ('llama3' or 'default')")
    return dict(
        rope_base=float(base),
        scale_factor=params["factor"],
        low_freq_factor=params["low_freq_factor"],
        high_freq_factor=params["high_freq_factor"],
        old_context_len=params["original_max_position_embeddings"],
    )
