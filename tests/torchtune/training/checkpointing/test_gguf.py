"""GGUF in and out on a tiny random-init Llama: our writer, reader, checkpointer and tokenizers.

References: transformers' GGUF loader (``from_pretrained(dir, gguf_file=...)``, which reads GGUF
with its own parser and dequantizer and undoes llama.cpp's q/k permutation), PEFT on top of it,
and the original tokenizers (the ``tokenizers`` library's BPE, SentencePiece).
"""

import pytest
import torch

from tests.test_utils.tokenizer_fixtures import random_chats, tiny_corpus, train_sentencepiece
from torchtune.models.gguf import gguf_tokenizer
from torchtune.models.gguf import GGUFChatMLTokenizer, gguf_tokenizer_metadata
from torchtune.models.llama2 import llama2_tokenizer
from torchtune.models.llama3_2 import llama3_2, lora_llama3_2
from torchtune.modules.transforms.tokenizers._gpt2 import GPT2_PATTERN
from torchtune.training import FullModelGGUFCheckpointer, gguf_model_config, save_gguf
from torchtune.training.checkpointing._gguf import gguf_dims
from torchtune.utils._gguf import GGUFFile

pytest.importorskip("gguf")
DIMS = dict(vocab_size=320, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=128,
            max_seq_len=64, norm_eps=1e-5, rope_base=10000.0, scale_factor=1, tie_word_embeddings=True)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOKENS = torch.tensor([[5, 17, 42, 99, 250, 3, 8, 77, 300, 12, 64, 1]])


def _train_bpe(folder):
    """A byte-level BPE trained by the ``tokenizers`` library (GPT-2 pre-tokenization), as files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=DIMS["vocab_size"], special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(tiny_corpus(), trainer=trainer)
    model = tok.to_str()
    import json

    data = json.loads(model)
    (folder / "vocab.json").write_text(json.dumps(data["model"]["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    (folder / "merges.txt").write_text("\n".join(merges))
    ours = GGUFChatMLTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                               special_tokens={t: tok.token_to_id(t) for t in SPECIALS}, pattern=GPT2_PATTERN,
                               eos_token="<|im_end|>", pad_token="<|endoftext|>")
    return tok, ours


def _random_model(seed=0):
    torch.manual_seed(seed)
    model = llama3_2(**DIMS).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.08) if p.dim() > 1 else p.uniform_(0.8, 1.2)
    return model


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny model written by our writer as an F32 GGUF file with a ChatML BPE tokenizer."""
    folder = tmp_path_factory.mktemp("gguf_src")
    hf_tok, ours_tok = _train_bpe(folder)
    model = _random_model()
    meta = gguf_tokenizer_metadata(ours_tok)
    save_gguf(model.state_dict(), folder / "tiny.gguf", DIMS | {"max_seq_len": DIMS["max_seq_len"]}, meta, "F32",
              name="tiny")
    return dict(folder=folder, model=model, hf_tok=hf_tok, ours_tok=ours_tok)


def _logits(model, tokens=TOKENS):
    with torch.no_grad():
        return model(tokens)


def _transformers_logits(folder, name):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, dtype=torch.float32).eval()
    with torch.no_grad():
        return hf(TOKENS).logits


def test_metadata_gives_the_builder_call(source):
    node = gguf_model_config(source["folder"] / "tiny.gguf")
    assert node == {"_component_": "torchtune.models.llama3_2.llama3_2", **DIMS}
    lora = gguf_model_config(source["folder"] / "tiny.gguf", lora_attn_modules=["q_proj"], lora_rank=4, lora_alpha=8)
    assert lora["_component_"] == "torchtune.models.llama3_2.lora_llama3_2" and lora["lora_rank"] == 4


def test_load_is_exact_and_transformers_agrees(source, tmp_path):
    ckpt = FullModelGGUFCheckpointer(source["folder"], ["tiny.gguf"], "LLAMA3_2", tmp_path)
    sd = ckpt.load_checkpoint()["model"]
    expected = source["model"].state_dict()
    assert sd.keys() == expected.keys() and all(torch.equal(sd[k], expected[k]) for k in sd)
    # transformers reads our file with its own parser and un-permutes q/k for its rotate-half RoPE.
    diff = (_transformers_logits(source["folder"], "tiny.gguf") - _logits(source["model"])).abs().max().item()
    assert diff < 1e-5


# Logits here are O(1). Rounding every weight perturbs them in proportion to the weights' relative
# RMS error: F16 about 2^-12 (0.02%), BF16 about 2^-9 (0.2%), Q8_0 (int8 with one scale per block of
# 32, step max|w|/127, max about 2.5 sigma) about 0.6%, three times BF16's.
@pytest.mark.parametrize("output_type,tol", [("F16", 5e-3), ("BF16", 5e-2), ("Q8_0", 1.5e-1)])
def test_fine_tuned_export_loads_in_transformers(source, tmp_path, output_type, tol):
    ckpt = FullModelGGUFCheckpointer(source["folder"], ["tiny.gguf"], "LLAMA3_2", tmp_path, output_type=output_type)
    tuned = _random_model()
    tuned.load_state_dict(ckpt.load_checkpoint()["model"])
    with torch.no_grad():  # a stand-in for fine-tuning: every weight moves
        for p in tuned.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    ckpt.save_checkpoint({"model": tuned.state_dict()}, epoch=0)
    epoch = tmp_path / "epoch_0"
    assert GGUFFile(epoch / "model.gguf").type_name("blk.0.attn_q.weight") == output_type
    ours = _logits(tuned)
    theirs = _transformers_logits(epoch, "model.gguf")
    assert (theirs - ours).abs().max().item() < tol
    # Same weights on both sides: our reader of the exported file agrees with transformers' tightly.
    reread = _random_model()
    reread.load_state_dict(FullModelGGUFCheckpointer(epoch, ["model.gguf"], "LLAMA3_2", tmp_path / "r")
                           .load_checkpoint()["model"])
    assert (_logits(reread) - theirs).abs().max().item() < 1e-4
    assert gguf_dims(GGUFFile(epoch / "model.gguf")) == DIMS


def test_merged_hf_safetensors_and_peft_adapter_load_in_transformers(source, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from torchtune.modules.peft import get_adapter_params, get_merged_lora_ckpt

    lora_args = dict(lora_attn_modules=["q_proj", "k_proj", "v_proj"], apply_lora_to_mlp=True, lora_rank=4,
                     lora_alpha=8)
    ckpt = FullModelGGUFCheckpointer(source["folder"], ["tiny.gguf"], "LLAMA3_2", tmp_path)
    model = lora_llama3_2(**{k: v for k, v in DIMS.items()}, **lora_args).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"], strict=False)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in get_adapter_params(model).values():
            p.normal_(0.0, 0.1)
    ours = _logits(model)
    adapter = {k: v.clone() for k, v in get_adapter_params(model).items()}
    merged = get_merged_lora_ckpt({k: v.clone() for k, v in model.state_dict().items()}, rank=4, alpha=8)
    ckpt.save_checkpoint({"model": merged, "adapter": adapter,
                          "adapter_config": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj",
                                                                                         "v_proj", "w1", "w2", "w3"]}},
                         epoch=0)
    epoch = tmp_path / "epoch_0"
    hf = AutoModelForCausalLM.from_pretrained(str(epoch), dtype=torch.float32).eval()
    with torch.no_grad():
        assert (hf(TOKENS).logits - ours).abs().max().item() < 1e-4
    base = AutoModelForCausalLM.from_pretrained(str(source["folder"]), gguf_file="tiny.gguf", dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(epoch / "adapter")).eval()
    with torch.no_grad():
        assert (peft_model(TOKENS).logits - ours).abs().max().item() < 1e-4


def test_bpe_tokenizer_read_from_our_gguf_encodes_as_the_original(source, tmp_path):
    ckpt = FullModelGGUFCheckpointer(source["folder"], ["tiny.gguf"], "LLAMA3_2", tmp_path)
    ckpt.save_checkpoint({"model": source["model"].state_dict()}, epoch=0)
    tok = gguf_tokenizer(tmp_path / "epoch_0" / "model.gguf")
    hf_tok = source["hf_tok"]
    for text in tiny_corpus(200, seed=3) + ["Ünïcödé 😀 text", "x = 1\n\n  print(x)  ", "12345 apples"]:
        assert tok.encode(text, add_bos=False, add_eos=False) == hf_tok.encode(text).ids, text
    # ChatML from the template written into the file, rendered by jinja2 as transformers would.
    import jinja2

    template = jinja2.Environment().from_string(tok.chat_template)
    from torchtune.data import Message

    for chat in random_chats(10):
        ids, _ = tok.tokenize_messages([Message(role=m["role"], content=m["content"]) for m in chat])
        assert ids == tok.encode(template.render(messages=chat), add_bos=False, add_eos=False)


def test_sentencepiece_tokenizer_through_gguf_encodes_as_the_original(tmp_path):
    import sentencepiece as spm

    path = train_sentencepiece(tmp_path)
    original = llama2_tokenizer(str(path))
    save_gguf(_random_model().state_dict(), tmp_path / "spm.gguf", DIMS, gguf_tokenizer_metadata(original), "F16")
    tok = gguf_tokenizer(tmp_path / "spm.gguf")
    reference = spm.SentencePieceProcessor(model_file=str(path))
    for text in tiny_corpus(200, seed=5) + ["  leading spaces", "tabs\tand\nnewlines", "Ünïcödé 😀"]:
        assert tok.encode(text, add_bos=True, add_eos=True) == [1] + reference.encode(text) + [2], text
    assert (tok.bos_id, tok.eos_id) == (original.bos_id, original.eos_id)


def _one_line_error(path, match):
    with pytest.raises(ValueError) as info:
        FullModelGGUFCheckpointer(path.parent, [path.name], "LLAMA3_2", path.parent / "out").load_checkpoint()
    message = str(info.value)
    assert "\n" not in message and str(path) in message and match in message, message


def test_truncated_file_names_the_file_and_the_tensor(source, tmp_path):
    src = source["folder"] / "tiny.gguf"
    info = GGUFFile(src).tensors["blk.1.ffn_up.weight"]
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(src.read_bytes()[: info.offset + info.n_bytes // 2])
    _one_line_error(cut, "'blk.1.ffn_up.weight'")
    head = tmp_path / "head.gguf"
    head.write_bytes(src.read_bytes()[:200])
    with pytest.raises(ValueError, match="head.gguf.*truncated"):
        GGUFFile(head)


def test_tampered_file_names_the_file_and_the_tensor(source, tmp_path):
    src = source["folder"] / "tiny.gguf"
    info = GGUFFile(src).tensors["blk.0.attn_k.weight"]
    data = bytearray(src.read_bytes())
    data[info.offset:info.offset + 8] = b"\xff" * 8  # two F32 NaNs
    bad = tmp_path / "nan.gguf"
    bad.write_bytes(bytes(data))
    _one_line_error(bad, "'blk.0.attn_k.weight'")
    # A tensor renamed in the header: not part of a Llama model.
    renamed = tmp_path / "renamed.gguf"
    renamed.write_bytes(src.read_bytes().replace(b"blk.1.attn_v.weight", b"blk.1.attn_x.weight"))
    _one_line_error(renamed, "'blk.1.attn_x.weight'")


def test_generate_recipe_reads_a_gguf_checkpoint(source, tmp_path, monkeypatch):
    """``generate`` with the GGUF checkpointer and tokenizer gives transformers' greedy text."""
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM

    import recipes.generate as generate_recipe
    from torchtune.data import Message

    folder = source["folder"]
    cfg = OmegaConf.create({
        "output_dir": str(tmp_path), "device": "cpu", "dtype": "fp32", "seed": 0,
        "model": gguf_model_config(folder / "tiny.gguf"),
        "checkpointer": {"_component_": "torchtune.training.FullModelGGUFCheckpointer",
                         "checkpoint_dir": str(folder), "checkpoint_files": ["tiny.gguf"],
                         "model_type": "LLAMA3_2", "output_dir": str(tmp_path)},
        "tokenizer": {"_component_": "torchtune.models.gguf.gguf_tokenizer", "path": str(folder / "tiny.gguf")},
        "prompt": {"user": "the cat sat"}, "max_new_tokens": 6, "temperature": 0.0, "top_k": None,
        "enable_kv_cache": True, "quantizer": None,
    })
    logged = []
    monkeypatch.setattr(generate_recipe.log, "info", lambda msg, *a, **k: logged.append(str(msg)))
    recipe = generate_recipe.InferenceRecipe(cfg)
    recipe.setup(cfg)
    recipe.generate(cfg)
    tok = gguf_tokenizer(folder / "tiny.gguf")
    prompt, _ = tok.tokenize_messages([Message(role="user", content="the cat sat")], add_eos=False)
    hf = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file="tiny.gguf", dtype=torch.float32).eval()
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                          do_sample=False, max_new_tokens=6, min_new_tokens=6, pad_token_id=0)
    expected = tok.decode(out[0].tolist())
    assert any(expected.strip() in text for text in logged), (expected, logged)


def test_eleuther_eval_perplexity_on_a_gguf_checkpoint(source, tmp_path):
    """``eleuther_eval``'s built-in perplexity with the GGUF checkpointer equals transformers' on the file."""
    import json

    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM

    from recipes.eleuther_eval import EleutherEvalRecipe

    folder, text = source["folder"], "the quick brown fox jumps over the lazy dog and runs away"
    (tmp_path / "docs.json").write_text(json.dumps([{"text": text}]))
    cfg = OmegaConf.create({
        "output_dir": str(tmp_path), "device": "cpu", "dtype": "fp32", "seed": 0, "tasks": [], "limit": None,
        "max_seq_length": 64, "batch_size": 1, "enable_kv_cache": True, "quantizer": None,
        "model": gguf_model_config(folder / "tiny.gguf"),
        "checkpointer": {"_component_": "torchtune.training.FullModelGGUFCheckpointer",
                         "checkpoint_dir": str(folder), "checkpoint_files": ["tiny.gguf"],
                         "model_type": "LLAMA3_2", "output_dir": str(tmp_path)},
        "tokenizer": {"_component_": "torchtune.models.gguf.gguf_tokenizer", "path": str(folder / "tiny.gguf")},
        "perplexity": {"data_files": str(tmp_path / "docs.json")},
    })
    recipe = EleutherEvalRecipe(cfg)
    recipe.setup(cfg)
    result = recipe.evaluate_perplexity()
    ids = torch.tensor([source["hf_tok"].encode(text).ids])  # no BOS: this tokenizer has none
    hf = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file="tiny.gguf", dtype=torch.float32).eval()
    with torch.no_grad():
        logprobs = hf(ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])
    assert result["tokens"] == ids.shape[1] - 1
    assert abs(result["nll"] - (-logprobs.mean().item())) < 1e-4
