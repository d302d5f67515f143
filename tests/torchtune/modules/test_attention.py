import torch
from torch import nn

from torchtune.modules import MultiHeadAttention, RMSNorm, RotaryPositionalEmbeddings, block_causal_mask


def _attn(num_heads=4, num_kv_heads=2, dim=32):
    head_dim = dim // num_heads
    return MultiHeadAttention(
        embed_dim=dim, num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
        q_proj=nn.Linear(dim, num_heads * head_dim, bias=False),
        k_proj=nn.Linear(dim, num_kv_heads * head_dim, bias=False),
        v_proj=nn.Linear(dim, num_kv_heads * head_dim, bias=False),
        output_proj=nn.Linear(dim, dim, bias=False),
        pos_embeddings=RotaryPositionalEmbeddings(head_dim, max_seq_len=64),
    ).eval()


def _reference_attention(attn, x, mask):
    """Explicit softmax attention with repeated kv heads (independent of SDPA and enable_gqa)."""
    b, s, _ = x.shape
    h, kvh, hd = attn.num_heads, attn.num_kv_heads, attn.head_dim
    q = attn.pos_embeddings(attn.q_proj(x).view(b, s, h, hd)).transpose(1, 2)
    k = attn.pos_embeddings(attn.k_proj(x).view(b, s, kvh, hd)).transpose(1, 2)
    v = attn.v_proj(x).view(b, s, kvh, hd).transpose(1, 2)
    k = k.repeat_interleave(h // kvh, dim=1)
    v = v.repeat_interleave(h // kvh, dim=1)
    scores = (q @ k.transpose(-1, -2)) / hd**0.5
    scores = scores.masked_fill(~mask[:, None], float("-inf"))
    out = scores.softmax(-1) @ v
    return attn.output_proj(out.transpose(1, 2).reshape(b, s, h * hd))


def test_gqa_causal_matches_explicit_attention():
    attn = _attn()
    x = torch.randn(2, 10, 32)
    mask = torch.ones(10, 10, dtype=torch.bool).tril().expand(2, 10, 10)
    torch.testing.assert_close(attn(x), _reference_attention(attn, x, mask), atol=1e-5, rtol=1e-5)


def test_packed_mask_blocks_cross_document_attention():
    attn = _attn(num_kv_heads=4)
    x = torch.randn(1, 8, 32)
    doc_ids = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2]])
    mask = block_causal_mask(doc_ids)
    pos = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 0]])
    packed = attn(x, mask=mask, input_pos=pos)
    # The second document alone gives the same output as inside the pack.
    alone = attn(x[:, 3:7])
    torch.testing.assert_close(packed[:, 3:7], alone, atol=1e-5, rtol=1e-5)


def test_rms_norm_matches_formula():
    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.scale.uniform_()
    x = torch.randn(3, 16)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.scale
    torch.testing.assert_close(norm(x), expected)
    assert norm(x.bfloat16()).dtype == torch.bfloat16
