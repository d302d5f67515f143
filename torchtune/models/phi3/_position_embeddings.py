"""Phi-3's rotary embedding: the rotate-half RoPE of Hugging Face checkpoints, as Qwen2's."""

from torchtune.models.qwen2._positional_embeddings import Qwen2RotaryPositionalEmbeddings


class Phi3RotaryPositionalEmbeddings(Qwen2RotaryPositionalEmbeddings):
    """Rotary positional embeddings on the "rotate-half" channel pairing of Hugging Face checkpoints.

    Channel ``i`` of a head is paired with channel ``i + h_d / 2`` (not with ``i + 1`` as in
    :class:`~torchtune.modules.RotaryPositionalEmbeddings`), and the pair is rotated by
    ``pos * base**(-2i / dim)``. Because the rotation matches the layout Phi-3's and Phi-4's q/k
    projections are stored in, their weights load without permuting rows. The rotation is
    :class:`~torchtune.models.qwen2.Qwen2RotaryPositionalEmbeddings`' (one implementation for both
    families); only the default base differs (Phi-3's ``rope_theta``, 10000). ``forward(x, input_pos)``
    takes ``[b, s, n_h, h_d]`` and returns the rotated tensor of the same shape and dtype.

    Args:
        dim (int): per-head embedding size (``head_dim``); must be even.
        max_seq_len (int): longest position cached. Default 4096.
        base (int): geometric base of the rotation frequencies (``rope_theta``). Default 10000.

    Raises:
        ValueError: if ``dim`` is odd.
    """

    def __init__(self, dim: int, max_seq_len: int = 4096, base: int = 10_000) -> None:
        super().__init__(dim=dim, max_seq_len=max_seq_len, base=base)
