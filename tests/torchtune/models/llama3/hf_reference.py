"""Shared parity checks of the Llama 3.x families against ``transformers.LlamaForCausalLM``.

Each family's test builds a tiny random-init reference of its architecture, saves it with
``save_pretrained`` and hands our builder to the checks below; the loading and saving code under
test is ``FullModelHFCheckpointer``.
"""

import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from torchtune.models.llama3_1._position_embeddings import rope_settings_from_hf_config
from torchtune.modules import TransformerDecoder, local_kv_cache
from torchtune.training import FullModelHFCheckpointer

# Tiny dimensions: 2 layers, dim 64, GQA (4 query / 2 key-value heads, head_dim 16).
TINY = dict(vocab_size=256, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=128,
            max_seq_len=128, norm_eps=1e-5)
# Llama 3.1-style scaling whose band falls inside the test length: with head_dim 16 and base
# 500000 the wavelengths are 6, 32, 170, ... positions, so the first is interpolated (between
# 16/4 and 16/1) and the rest are divided by the factor.
LLAMA3_SCALING = dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                      original_max_position_embeddings=16)
SEQ_LEN = 40  # > original_max_position_embeddings, so the scaled frequencies matter


def save_reference(path: Path, *, rope_scaling: Optional[Dict[str, Any]], tie: bool, seed: int = 0,
                   rope_theta: float = 500_000.0, vocab_size: int = TINY["vocab_size"]):
    """Random-init tiny ``LlamaForCausalLM`` (fp32, eval) saved with ``save_pretrained``; returns it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    rope_parameters = dict(rope_scaling or {"rope_type": "default"}, rope_theta=rope_theta)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=TINY["embed_dim"], intermediate_size=TINY["intermediate_dim"],
        num_hidden_layers=TINY["num_layers"], num_attention_heads=TINY["num_heads"],
        num_key_value_heads=TINY["num_kv_heads"], max_position_embeddings=TINY["max_seq_len"],
        rms_norm_eps=TINY["norm_eps"], rope_parameters=rope_parameters, tie_word_embeddings=tie,
        attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Wider than HF's std 0.02, so logits differ meaningfully between tokens.
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.08)
    model.save_pretrained(str(path), safe_serialization=True)
    return model.eval()


def checkpointer(folder: Path, model_type: str, out: Path) -> FullModelHFCheckpointer:
    files = sorted(p.name for p in folder.glob("*.safetensors"))
    return FullModelHFCheckpointer(str(folder), files, model_type, str(out))


def load_ours(folder: Path, builder: Callable[..., TransformerDecoder], model_type: str, out: Path,
              **builder_kwargs) -> TransformerDecoder:
    """Our model built with the RoPE settings of ``folder/config.json``, weights loaded strictly."""
    config = json.loads((folder / "config.json").read_text())
    model = builder(**TINY, **rope_settings_from_hf_config(config), **builder_kwargs).eval()
    model.load_state_dict(checkpointer(folder, model_type, out).load_checkpoint()["model"], strict=True)
    return model


def tokens(batch: int = 2, seq_len: int = SEQ_LEN, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], (batch, seq_len), generator=torch.Generator().manual_seed(seed))


def max_logit_error(ours, ref, x: torch.Tensor) -> float:
    """Largest |logit| gap; either side may be ours (a tensor) or transformers (``.logits``)."""
    def logits(model):
        out = model(x)
        return getattr(out, "logits", out)

    with torch.no_grad():
        return (logits(ours) - logits(ref)).abs().max().item()


def saved_output_loads_strictly(ours: TransformerDecoder, folder: Path, model_type: str, out: Path):
    """Save ours through the checkpointer; return the ``transformers`` model loaded from it strictly."""
    from transformers import AutoModelForCausalLM

    checkpointer(folder, model_type, out).save_checkpoint({"model": ours.state_dict()}, epoch=0)
    back, info = AutoModelForCausalLM.from_pretrained(str(out / "epoch_0"), output_loading_info=True,
                                                      dtype=torch.float32)
    # Strict: nothing missing (a tied lm_head counts as present), unexpected or mis-shaped.
    problems = {k: v for k, v in info.items() if v}
    assert not problems, problems
    return back.eval()


def kv_cache_error(ours: TransformerDecoder, x: torch.Tensor, prefill: int = 24) -> float:
    """Largest gap between full-sequence logits and a prefill + one-token-at-a-time decode."""
    with torch.no_grad():
        full = ours(x)
        # The caches are deleted on exit, so the model is left as it was.
        with local_kv_cache(ours, batch_size=x.shape[0], device=x.device, dtype=torch.float32):
            steps = [ours(x[:, :prefill])] + [ours(x[:, i:i + 1]) for i in range(prefill, x.shape[1])]
    return (torch.cat(steps, dim=1) - full).abs().max().item()


# HF -> Meta key names, written independently of torchtune.models.convert_weights (under test).
_HF_TO_META = {
    "self_attn.q_proj": "attention.wq", "self_attn.k_proj": "attention.wk", "self_attn.v_proj": "attention.wv",
    "self_attn.o_proj": "attention.wo", "mlp.gate_proj": "feed_forward.w1", "mlp.down_proj": "feed_forward.w2",
    "mlp.up_proj": "feed_forward.w3", "input_layernorm": "attention_norm", "post_attention_layernorm": "ffn_norm",
}


def write_meta_checkpoint(ref, folder: Path) -> Path:
    """Write ``ref``'s weights as Meta's ``consolidated.00.pth`` (interleaved q/k rows) under ``folder``.

    Like Meta's files for the tied Llama 3.2 sizes, a tied model gets ``output.weight`` as a copy
    of the embedding table.
    """
    head_dim = TINY["embed_dim"] // TINY["num_heads"]
    sd = ref.state_dict()
    meta = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"],
            "output.weight": sd["lm_head.weight"].clone()}
    for i in range(TINY["num_layers"]):
        for hf_name, meta_name in _HF_TO_META.items():
            w = sd[f"model.layers.{i}.{hf_name}.weight"]
            heads = {"self_attn.q_proj": TINY["num_heads"], "self_attn.k_proj": TINY["num_kv_heads"]}.get(hf_name)
            if heads is not None:
                # rotate-half rows -> interleaved pairs, within each head
                w = w.view(heads, 2, head_dim // 2, -1).transpose(1, 2).reshape(heads * head_dim, -1)
            meta[f"layers.{i}.{meta_name}.weight"] = w.clone()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "consolidated.00.pth"
    torch.save(meta, path)
    return path


def load_meta(folder: Path, model: TransformerDecoder, model_type: str, out: Path) -> TransformerDecoder:
    """Load ``folder/consolidated.00.pth`` into ``model`` strictly through ``FullModelMetaCheckpointer``."""
    from torchtune.training import FullModelMetaCheckpointer

    ckpt = FullModelMetaCheckpointer(str(folder), ["consolidated.00.pth"], model_type, str(out))
    model.load_state_dict(ckpt.load_checkpoint()["model"], strict=True)
    return model.eval()


def base_param_count(builder: Callable[..., TransformerDecoder], *args, **kwargs) -> int:
    """Parameters of ``builder(...)`` built on the meta device, adapters (``lora_*``, ``magnitude``) left out."""
    with torch.device("meta"):
        model = builder(*args, **kwargs)
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and "magnitude" not in n)


def record_calls(monkeypatch, module, name: str) -> list:
    """Replace ``module.name`` by a recorder of its keyword arguments (for wiring checks)."""
    calls = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        return None

    monkeypatch.setattr(module, name, fake)
    return calls
