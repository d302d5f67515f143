"""Context managers that switch a model's KV caches off, or set them up for one block of code."""

import contextlib
from typing import Any, Dict, Generator, List, Optional

import torch
from torch import nn

from torchtune.modules.attention import MultiHeadAttention


def _cached_attentions(model: nn.Module) -> List[MultiHeadAttention]:
    return [m for m in model.modules() if isinstance(m, MultiHeadAttention) and m.kv_cache is not None]


@contextlib.contextmanager
def disable_kv_cache(model: nn.Module) -> Generator[None, None, None]:
    """Run the model without its KV caches inside the block; they are re-enabled on exit.

    The caches keep their contents. Useful to compare cached and uncached decoding, or to
    score full sequences with a model set up for generation.

    Args:
        model (nn.Module): a model whose caches were set up (``model.setup_caches(...)``).

    Yields:
        None

    Raises:
        ValueError: if the model has no KV caches set up.
    """
    attentions = _cached_attentions(model)
    if not attentions:
        raise ValueError("disable_kv_cache: the model has no KV caches; call model.setup_caches() first")
    previous = [a.cache_enabled for a in attentions]
    for a in attentions:
        a.cache_enabled = False
    try:
        yield
    finally:
        for a, enabled in zip(attentions, previous):
            a.cache_enabled = enabled


def delete_kv_caches(model: nn.Module) -> None:
    """Remove every KV cache of the model (and the decoder's cache mask), freeing their memory.

    Args:
        model (nn.Module): a model whose caches were set up.

    Raises:
        ValueError: if the model has no KV caches set up.
    """
    attentions = _cached_attentions(model)
    if not attentions:
        raise ValueError("delete_kv_caches: the model has no KV caches; call model.setup_caches() first")
    for a in attentions:
        a.kv_cache = None
        a.cache_enabled = False
    for m in model.modules():
        if hasattr(m, "decoder_max_cache_seq_len"):
            m.decoder_max_cache_seq_len = None
            m._buffers.pop("causal_mask", None)


@contextlib.contextmanager
def local_kv_cache(
    model: nn.Module,
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    encoder_max_seq_len: Optional[int] = None,
    decoder_max_seq_len: Optional[int] = None,
) -> Generator[None, None, None]:
    """Set up KV caches for the block and delete them on exit (e.g. generation during eval).

    Args:
        model (nn.Module): a decoder with ``setup_caches``; it must have no caches yet.
        batch_size (int): largest batch to decode.
        device (torch.device): device of the caches.
        dtype (torch.dtype): cache dtype.
        encoder_max_seq_len (Optional[int]): passed to ``setup_caches``.
        decoder_max_seq_len (Optional[int]): cache length; the model's ``max_seq_len`` if None.

    Yields:
        None

    Raises:
        ValueError: if the model already has KV caches.
    """
    if _cached_attentions(model):
        raise ValueError(
            "local_kv_cache: the model already has KV caches; call delete_kv_caches(model) first"
        )
    with torch.device(device):
        model.setup_caches(
            batch_size,
            dtype,
            encoder_max_seq_len=encoder_max_seq_len,
            decoder_max_seq_len=decoder_max_seq_len,
        )
    try:
        yield
    finally:
        delete_kv_caches(model)


def reparametrize_as_dtype_state_dict_post_hook(
    model: nn.Module,
    state_dict: Dict[str, Any],
    *args: Any,
    dtype: torch.dtype = torch.bfloat16,
    offload_to_cpu: bool = True,
    **kwargs: Any,
):
    """State-dict post-hook that returns NF4 weights dense, in ``dtype``.

    Register it with ``model._register_state_dict_hook(functools.partial(hook, dtype=...))``. Our
    NF4 layers (``FrozenNF4Linear``, QLoRA's ``LoRALinear``) already return their weights dense in
    their original dtype; this hook is for models holding NF4 tensors set by other code.
    ``state_dict`` is updated in place.

    Args:
        model (nn.Module): the module the state dict belongs to (unused; hook signature).
        state_dict (Dict[str, Any]): the state dict being returned.
        *args (Any): the hook's prefix and local_metadata (unused).
        dtype (torch.dtype): dtype of the dense tensors. Default torch.bfloat16.
        offload_to_cpu (bool): move the dense tensors to CPU, so a state dict of a large model never
            holds a dense copy of every layer on the accelerator. Default True.
        **kwargs (Any): unused.
    """
    from torchtune.modules.low_precision._nf4 import dequantize, is_nf4

    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and is_nf4(value):
            dense = dequantize(value).to(dtype)
            state_dict[key] = dense.cpu() if offload_to_cpu else dense
