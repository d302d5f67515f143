"""A random-init `transformers` Phi3ForCausalLM on tiny dimensions, shared by the Phi-3 and Phi-4 tests."""

from typing import Dict

from tests.torchtune.models.hf_parity import widen_init


def hf_phi3_config(dims: Dict):
    """``Phi3Config`` with ``dims`` (our builder's argument names), global attention, untied output."""
    from transformers import Phi3Config

    return Phi3Config(
        vocab_size=dims["vocab_size"], hidden_size=dims["embed_dim"], intermediate_size=dims["intermediate_dim"],
        num_hidden_layers=dims["num_layers"], num_attention_heads=dims["num_heads"],
        num_key_value_heads=dims["num_kv_heads"], max_position_embeddings=dims["max_seq_len"],
        original_max_position_embeddings=dims["max_seq_len"], rms_norm_eps=dims["norm_eps"],
        rope_theta=float(dims["rope_base"]), sliding_window=None, tie_word_embeddings=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, attn_implementation="eager",
    )


def make_hf_phi3(dims: Dict, seed: int = 0):
    """A ``Phi3ForCausalLM`` (fp32, eval mode) with widened random weights."""
    from transformers import Phi3ForCausalLM

    return widen_init(Phi3ForCausalLM(hf_phi3_config(dims)), seed=seed)
