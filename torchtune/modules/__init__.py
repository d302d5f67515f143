from torchtune.modules.attention import MultiHeadAttention
from torchtune.modules.attention_utils import block_causal_mask, causal_mask
from torchtune.modules.common_utils import delete_kv_caches, disable_kv_cache, local_kv_cache
from torchtune.modules.feed_forward import FeedForward
from torchtune.modules.kv_cache import KVCache
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
]
