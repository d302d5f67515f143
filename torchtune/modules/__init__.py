from torchtune.modules.attention import MultiHeadAttention
from torchtune.modules.attention_utils import (
    block_causal_mask,
    causal_mask,
    create_block_causal_mask,
    packed_block_causal_mask,
)
from torchtune.modules.common_utils import (
    delete_kv_caches,
    disable_kv_cache,
    local_kv_cache,
    reparametrize_as_dtype_state_dict_post_hook,
)
from torchtune.modules.decoder_builder import ScaledEmbedding, build_decoder
from torchtune.modules.feed_forward import FeedForward
from torchtune.modules.kv_cache import KVCache
from torchtune.modules.layer_norm import Fp32LayerNorm
from torchtune.modules.layer_builders import (
    LinearBuilder,
    build_mlp,
    build_self_attention,
    dense_linear,
    frozen_nf4_linear,
)
from torchtune.modules.low_precision import FrozenNF4Linear
from torchtune.modules.position_embeddings import RotaryPositionalEmbeddings
from torchtune.modules.rms_norm import RMSNorm
from torchtune.modules.tanh_gate import TanhGate
from torchtune.modules.tied_linear import TiedLinear
from torchtune.modules.transformer import (
    TransformerCrossAttentionLayer,
    TransformerDecoder,
    TransformerSelfAttentionLayer,
)
from torchtune.modules.attention_backends import ChunkedBackend, FlexBackend, MathBackend, SDPABackend
from torchtune.modules.block_layers import ParallelTransformerLayer, ReLUSquared, TransformerBlockLayer
from torchtune.modules.input_embeddings import (
    L2NormEmbedding,
    LearnedPositionalEmbedding,
    MemoryTokens,
    PostEmbedding,
    SinusoidalPositionalEmbedding,
)
from torchtune.modules.linear_attention import LinearAttention, LinearAttentionState
from torchtune.modules.position_bias import (
    ALiBiPositionBias,
    PartialRotaryPositionalEmbeddings,
    T5RelativePositionBias,
    alibi_slopes,
)

__all__ = [
    "Fp32LayerNorm",
    "FrozenNF4Linear",
    "TanhGate",
    "create_block_causal_mask",
    "packed_block_causal_mask",
    "reparametrize_as_dtype_state_dict_post_hook",
    "MultiHeadAttention",
    "FeedForward",
    "KVCache",
    "RotaryPositionalEmbeddings",
    "RMSNorm",
    "TiedLinear",
    "TransformerCrossAttentionLayer",
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
    # The block library (docs/blocks.md; not in torchtune v0.6.1).
    "ALiBiPositionBias",
    "ChunkedBackend",
    "FlexBackend",
    "L2NormEmbedding",
    "LearnedPositionalEmbedding",
    "LinearAttention",
    "LinearAttentionState",
    "MathBackend",
    "MemoryTokens",
    "ParallelTransformerLayer",
    "PartialRotaryPositionalEmbeddings",
    "PostEmbedding",
    "ReLUSquared",
    "SDPABackend",
    "SinusoidalPositionalEmbedding",
    "T5RelativePositionBias",
    "TransformerBlockLayer",
    "alibi_slopes",
]
