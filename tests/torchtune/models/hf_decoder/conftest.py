"""Tiny random-init transformers models of every architecture ``hf_decoder`` covers."""

from pathlib import Path
from typing import Any, Dict, Tuple

import torch

# Per model_type: config overrides on top of the shared tiny dimensions.
TINY = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
ARCHS: Dict[str, Dict[str, Any]] = {
    "llama": dict(rms_norm_eps=1e-5, tie_word_embeddings=False, attention_bias=True, mlp_bias=True),
    "mistral": dict(rms_norm_eps=1e-5, sliding_window=5, head_dim=16),
    "qwen2": dict(rms_norm_eps=1e-6, tie_word_embeddings=True),
    "qwen3": dict(rms_norm_eps=1e-6, head_dim=24, use_sliding_window=True, sliding_window=6, max_window_layers=1),
    "starcoder2": dict(norm_epsilon=1e-5, sliding_window=7, use_bias=True, num_key_value_heads=1),
    "phi3": dict(rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=0,
                 rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                  "short_factor": [1.0 + 0.05 * i for i in range(8)],
                                  "long_factor": [2.0 + 0.1 * i for i in range(8)]},
                 original_max_position_embeddings=32),
    "gemma": dict(rms_norm_eps=1e-6, head_dim=16, hidden_act="gelu_pytorch_tanh"),
    "gemma2": dict(rms_norm_eps=1e-6, head_dim=16, query_pre_attn_scalar=24, attn_logit_softcapping=5.0,
                   final_logit_softcapping=3.0, sliding_window=6),
    "gemma3_text": dict(rms_norm_eps=1e-6, head_dim=16, query_pre_attn_scalar=16, sliding_window=6,
                        num_hidden_layers=3, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                         "full_attention": {"rope_type": "linear", "factor": 2.0,
                                                            "rope_theta": 1000000.0}}),
    "gpt_neox": dict(layer_norm_eps=1e-5, num_key_value_heads=4, use_parallel_residual=True,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}),
    "gpt2": dict(n_inner=96, layer_norm_epsilon=1e-5, activation_function="gelu_new"),
    "bloom": dict(layer_norm_epsilon=1e-5),
    "stablelm": dict(layer_norm_eps=1e-5, use_qkv_bias=True,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}),
    "stablelm_parallel": dict(use_parallel_residual=True, num_key_value_heads=4),
    "olmo2": dict(rms_norm_eps=1e-6),
    "granite": dict(rms_norm_eps=1e-6, embedding_multiplier=12.0, attention_multiplier=0.05, residual_multiplier=0.22,
                    logits_scaling=8.0, tie_word_embeddings=True),
    "phi": dict(layer_norm_eps=1e-5, num_key_value_heads=4, hidden_act="gelu_new",
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}),
    "falcon": dict(multi_query=True, parallel_attn=True, new_decoder_architecture=False, bias=True),
    "falcon_new": dict(new_decoder_architecture=True, num_kv_heads=2, ffn_hidden_size=96),
    "falcon_sequential": dict(multi_query=False, parallel_attn=False, new_decoder_architecture=False),
    "mpt": dict(d_model=64, n_heads=4, n_layers=2, expansion_ratio=4, max_seq_len=64),
}
# Variants of an architecture: the key of ARCHS -> the model_type it builds.
MODEL_TYPE = {"stablelm_parallel": "stablelm", "falcon_new": "falcon", "falcon_sequential": "falcon"}


def make_hf_model(model_type: str, seed: int = 0, **overrides) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """A random-init fp32 ``AutoModelForCausalLM`` of ``model_type``; every parameter perturbed
    (norm weights and biases too, so a dropped or misplaced one changes the logits)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(MODEL_TYPE.get(model_type, model_type), **{**TINY, **ARCHS[model_type], **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.08)
            else:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval(), config.to_dict()


def save_hf_model(path: Path, model_type: str, seed: int = 0, **overrides) -> torch.nn.Module:
    model, _ = make_hf_model(model_type, seed, **overrides)
    model.save_pretrained(str(path), safe_serialization=True)
    return model
