from torchtune.modules.attention import MultiHeadAttention
from torchtune.modules.attention_utils import block_causal_mask, causal_mask
from torchtune.modules.common_utils import delete_kv_caches, disable_kv_cache, local_kv_cache
from torchtune.modules.decoder_builder import ScaledEmbedding, build_decoder
from torchtune.modules.feed_forward import FeedForward
from torchtune.modules.kv_cache import KVCache
from torchtune.modules.layer_builders import (
    LinearBuilder,
    build_mlp,
    build_self_attention,
    dense_linear,
    frozen_nf4_linear,
)
from torchtune.modules.position_embeddings import RotaryPositionalEmbeddings
from torchtune.modules.rms_norm import RMSNorm
from torchtune.modules.tied_linear import TiedLinear
from torchtune.modules.transformer import TransformerDecoder, TransformerSelfAttentionLayer

__all__ = [
    "MultiHeadAttention",
    "FeedForward",
    "KVCache",
    "RotaryPositionalEmbeddings",
    "RMSNorm",
    "TiedLinear",
    "TransformerDecoder",
    "TransformerSelfAttentionLayer",
    "block_causal_mask",
    "causal_mask",
    "delete_kv_caches",
    "disable_kv_cache",
    "local_kv_cache",
    # Model assembly shared by every family (not in torchtune v0.6.1).
    "LinearBuilder",
    "ScaledEmbedding",
    "build_decoder",
    "build_mlp",
    "build_self_attention",
    "dense_linear",
    "frozen_nf4_linear",
]
