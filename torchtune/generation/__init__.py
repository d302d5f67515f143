"""Text generation: batched, left-padded prompts decoded with or without a KV cache."""

from torchtune.generation._generation import generate, generate_next_token
from torchtune.generation._masks import (
    get_causal_mask_from_padding_mask,
    get_position_ids_from_padding_mask,
)
from torchtune.generation._sampling import sample
from torchtune.modules.common_utils import disable_kv_cache, local_kv_cache

__all__ = [
    "generate",
    "generate_next_token",
    "sample",
    "get_causal_mask_from_padding_mask",
    "get_position_ids_from_padding_mask",
    "disable_kv_cache",
    "local_kv_cache",
]
