"""The generic decoder builder: every positional and attention variant decodes with its cache as the
full forward does and takes LoRA; impossible combinations are refused at build time."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from torchtune.models import decoder, lora_decoder
from torchtune.modules import (
    ALiBiPositionBias,
    Fp32LayerNorm,
    LinearAttention,
    MultiHeadAttention,
    T5RelativePositionBias,
    TransformerBlockLayer,
)
from torchtune.modules.peft import LoRALinear, get_adapter_params, set_trainable_params

DIMS = dict(vocab_size=64, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, intermediate_dim=48,
            max_seq_len=32)

VARIANTS = {
    "rope": {},
    "partial_rope": dict(positional="partial_rope", rope_fraction=0.25),
    "alibi": dict(positional="alibi"),
    "t5": dict(positional="t5", t5_num_buckets=8, t5_max_distance=16),
    "sinusoidal": dict(positional="sinusoidal"),
    "scaled_sinusoidal": dict(positional="scaled_sinusoidal"),
    "learned": dict(positional="learned"),
    "none": dict(positional="none"),
    "per_layer_positional": dict(positional=["alibi", "rope"]),
    "mha": dict(num_kv_heads=4),
    "mqa": dict(num_kv_heads=1),
    "sliding_window": dict(sliding_window=[3, None], positional="alibi"),
    "math": dict(attention_backend="math", sliding_window=4),
    "chunked": dict(attention_backend="chunked", chunk_size=3, positional="t5"),
    "flex": dict(attention_backend=["flex", "sdpa"], sliding_window=5),  # flex on CPU: ~0.3 s per call
    "softcap": dict(attn_softcapping=5.0, output_softcapping=3.0, attn_scale=0.2, norm="gemma_rmsnorm"),
    "softcap_math": dict(attn_softcapping=5.0, attention_backend="math", positional="alibi"),
    "linear": dict(attention="linear", positional="learned"),
    "hybrid": dict(attention=["linear", "softmax"], positional=["none", "rope"]),
    "memory_tokens": dict(num_memory_tokens=3, positional="alibi"),
    "post_norm_parallel": dict(parallel_residual=True, attn_norm_placement="both", qk_norm=True),
    "post_norm_geglu": dict(attn_norm_placement="post", mlp_norm_placement=["post", "both"], ffn="geglu",
                            norm="layernorm", post_embedding_norm=True),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_cached_decoding_equals_full_forward_and_lora_applies(name):
    torch.manual_seed(0)
    kwargs = {**DIMS, **VARIANTS[name]}
    model = decoder(**kwargs).eval()
    tokens = torch.randint(0, 64, (2, 12))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex attention without torch.compile on CPU
        full = model(tokens)
        assert full.shape == (2, 12, 64)
        model.setup_caches(batch_size=2, dtype=torch.float32)
        prefill = 10 if name == "flex" else 9
        steps = [model(tokens[:, :prefill])] + [model(tokens[:, i:i + 1]) for i in range(prefill, 12)]
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    # LoRA: the same stack with adapters equals the base model at initialisation, and trains only them.
    lora = lora_decoder(["q_proj", "v_proj"], apply_lora_to_mlp=True, lora_rank=2, lora_alpha=4, **kwargs)
    assert isinstance(lora.layers[1].attn.q_proj, LoRALinear) and isinstance(lora.layers[0].mlp.w1, LoRALinear)
    missing, unexpected = lora.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all("lora_" in k for k in missing)
    set_trainable_params(lora, get_adapter_params(lora))
    if name == "flex":  # torch 2.13 has no flex-attention backward on CPU: forward only
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.testing.assert_close(lora(tokens), full, atol=1e-5, rtol=1e-5)
        return
    out = lora(tokens)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-5)  # no dropout: train == eval
    F.cross_entropy(out.flatten(0, 1), tokens.flatten()).backward()
    grads = {n: p.grad for n, p in lora.named_parameters() if p.requires_grad}
    assert grads and all("lora_" in n for n in grads) and all(g is not None for g in grads.values())


def test_choices_become_the_named_modules():
    model = decoder(**DIMS, positional=["alibi", "t5"], norm="layernorm_no_bias", l2norm_embeddings=True, tie_word_embeddings=True)
    assert isinstance(model.layers[0].attn.attn_bias, ALiBiPositionBias)
    assert isinstance(model.layers[1].attn.attn_bias, T5RelativePositionBias)
    assert isinstance(model.norm, Fp32LayerNorm) and model.norm.bias is None
    emb = model.tok_embeddings(torch.tensor([[1, 2]]))
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(1, 2))
    assert model.output.tied_module is model.tok_embeddings
    hybrid = decoder(**DIMS, attention=["linear", "softmax"], positional="none", logits_dim=5)
    assert isinstance(hybrid.layers[0].attn, LinearAttention) and isinstance(hybrid.layers[1].attn, MultiHeadAttention)
    assert isinstance(hybrid.layers[0], TransformerBlockLayer)
    assert hybrid(torch.randint(0, 64, (1, 4))).shape == (1, 4, 5)


def test_memory_tokens_are_attended_but_have_no_logits():
    torch.manual_seed(0)
    model = decoder(**DIMS, num_memory_tokens=2).eval()
    tokens = torch.randint(0, 64, (1, 6))
    with torch.no_grad():
        before = model(tokens)
        model.memory_tokens.tokens.add_(1.0)
        after = model(tokens)
    assert before.shape == (1, 6, 64) and not torch.allclose(before, after)
    with pytest.raises(ValueError, match="memory tokens need a causal batch"):
        model(tokens, mask=torch.ones(1, 6, 6, dtype=torch.bool))


@pytest.mark.parametrize("kwargs, message", [
    (dict(positional="partial_rope", rope_fraction=0.3), "partial RoPE fraction 0.3 of head_dim 8 rotates 2.4"),
    (dict(num_memory_tokens=2, packed=True), "num_memory_tokens > 0 cannot be combined with packed=True"),
    (dict(positional="alibl"), "unknown positional 'alibl'; did you mean 'alibi'?"),
    (dict(attention_backend="flexx"), "did you mean 'flex'?"),
    (dict(ffn="swiglo"), "did you mean 'swiglu'?"),
    (dict(norm="rmsnrom"), "did you mean 'rmsnorm'?"),
    (dict(attn_norm_placement="psot"), "did you mean 'post'?"),
    (dict(attention="lineer", positional="none"), "did you mean 'linear'?"),
    (dict(attention="linear"), "attention 'linear' \\(layer 0\\) has no score matrix for positional 'rope'"),
    (dict(attention="linear", positional="none", sliding_window=4), "cannot have a sliding_window"),
    (dict(attention="linear", positional="none", packed=True), "packed=True"),
    (dict(parallel_residual=True, mlp_norm_placement="post"), "parallel_residual needs"),
    (dict(positional=["rope", "learned"]), "absolute positions are added once"),
    (dict(attention_backend="chunked", attn_dropout=0.1), "does not support attn_dropout"),
    (dict(sliding_window=[2, 3, 4]), "sliding_window has 3 entries, expected one per layer \\(2\\)"),
    (dict(tie_word_embeddings=True, logits_dim=3), "logits_dim \\(3\\) must equal vocab_size"),
])
def test_impossible_combinations_are_refused_at_build_time(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        decoder(**{**DIMS, **kwargs})
    assert "\n" not in str(info.value)
