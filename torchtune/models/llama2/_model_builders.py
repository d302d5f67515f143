from torchtune.models.llama2._component_builders import llama2
from torchtune.modules import TransformerDecoder


def llama2_7b() -> TransformerDecoder:
    """Llama2 7B: 32 layers, 32 heads, dim 4096, MLP 11008, vocab 32000, context 4096."""
    return llama2(
        vocab_size=32_000, num_layers=32, num_heads=32, num_kv_heads=32,
        embed_dim=4096, max_seq_len=4096, attn_dropout=0.0, norm_eps=1e-5,
    )


def llama2_13b() -> TransformerDecoder:
    """Llama2 13B: 40 layers, 40 heads, dim 5120, MLP 13824, vocab 32000, context 4096."""
    return llama2(
        vocab_size=32_000, num_layers=40, num_heads=40, num_kv_heads=40,
        embed_dim=5120, intermediate_dim=13824, max_seq_len=4096, attn_dropout=0.0, norm_eps=1e-5,
    )


def llama2_70b() -> TransformerDecoder:
    """Llama2 70B: 80 layers, 64 query / 8 key-value heads, dim 8192, MLP 28672, vocab 32000."""
    return llama2(
        vocab_size=32_000, num_layers=80, num_heads=64, num_kv_heads=8,
        embed_dim=8192, intermediate_dim=28672, max_seq_len=4096, attn_dropout=0.0, norm_eps=1e-5,
    )
