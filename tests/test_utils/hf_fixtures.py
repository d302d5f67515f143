from pathlib import Path
from typing import Dict, Optional

import torch

# Dimensions of the tiny Llama used across the suite (2 layers, dim 64).
TINY_LLAMA = dict(vocab_size=256, num_layers=2, num_heads=4, num_kv_heads=4, embed_dim=64,
                  intermediate_dim=128, max_seq_len=128, norm_eps=1e-5, rope_base=10000.0)


def make_hf_llama(num_kv_heads: Optional[int] = None, seed: int = 0, **overrides):
    """A random-init ``transformers.LlamaForCausalLM`` with the tiny dimensions (fp32, eval mode)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    dims: Dict = dict(TINY_LLAMA, **overrides)
    if num_kv_heads is not None:
        dims["num_kv_heads"] = num_kv_heads
    config = LlamaConfig(
        vocab_size=dims["vocab_size"],
        hidden_size=dims["embed_dim"],
        intermediate_size=dims["intermediate_dim"],
        num_hidden_layers=dims["num_layers"],
        num_attention_heads=dims["num_heads"],
        num_key_value_heads=dims["num_kv_heads"],
        max_position_embeddings=dims["max_seq_len"],
        rms_norm_eps=dims["norm_eps"],
        rope_theta=dims["rope_base"],
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # HF initialises with std 0.02; widen so logits differ meaningfully between tokens.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.08)
    return model.eval(), dims


def save_hf_llama(path: Path, num_kv_heads: Optional[int] = None, seed: int = 0,
                  max_shard_size: Optional[str] = None, **overrides):
    """Save a random-init tiny Llama with ``save_pretrained`` (safetensors) and return (model, dims)."""
    model, dims = make_hf_llama(num_kv_heads=num_kv_heads, seed=seed, **overrides)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(path), safe_serialization=True, **kwargs)
    return model, dims
