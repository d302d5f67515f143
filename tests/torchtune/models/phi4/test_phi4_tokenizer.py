"""Phi-4 tokenizer against transformers: a tiny byte-level BPE with cl100k's pre-tokenization (Phi-4's
``tokenizer.json`` layout), written as ``vocab.json`` + ``merges.txt`` and as ``tokenizer.json``, and
Phi-4's chat template written out below as the Jinja of its ``tokenizer_config.json``."""

import pytest

from tests.test_utils.tokenizer_fixtures import random_chats, tiny_corpus
from tests.torchtune.models.qwen2.tokenizer_files import hf_chat_ids
from torchtune.data import OpenAIToMessages
from torchtune.models.phi4 import phi4_tokenizer

CL100K = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
PHI4_TEMPLATE = (
    "{% for message in messages %}{% if (message['role'] == 'system') %}"
    "{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}"
    "{% elif (message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + message['content'] + '<|im_end|>'}}"
    "{% elif (message['role'] == 'assistant') %}"
    "{{'<|im_start|>assistant<|im_sep|>' + message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant<|im_sep|>' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_sep|>"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("phi4_tok")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CL100K), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(tiny_corpus(), trainer=trainers.BpeTrainer(
        vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok.model.save(str(directory))
    tok.add_special_tokens(SPECIALS)
    tok.save(str(directory / "tokenizer.json"))
    hf = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), eos_token="<|im_end|>")
    return directory, hf


def test_conversations_match_chat_template(files):
    directory, hf = files
    for tok in (phi4_tokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"),
                               special_tokens_path=str(directory / "tokenizer.json")),
                phi4_tokenizer(str(directory / "tokenizer.json"))):
        for chat in random_chats(10, seed=2):
            messages = OpenAIToMessages()({"messages": chat})["messages"]
            tokens, mask = tok.tokenize_messages(messages)
            assert tokens == hf_chat_ids(hf, PHI4_TEMPLATE, chat)
            trained = tok.decode([t for t, m in zip(tokens, mask) if not m])
            assert trained == "".join(f"<|im_start|>assistant<|im_sep|>{m['content']}<|im_end|>"
                                      for m in chat if m["role"] == "assistant")
            prompt = tok({"messages": messages[:-1]}, inference=True)["tokens"]
            assert prompt == hf_chat_ids(hf, PHI4_TEMPLATE, chat[:-1], add_generation_prompt=True)


def test_encode_decode_round_trip(files):
    directory, hf = files
    tok = phi4_tokenizer(str(directory / "tokenizer.json"))
    for text in ["Hello world 1234567", "Ünïcödé 😀\n\n  x", "<|im_sep|> in text"]:
        ids = tok.encode(text, add_eos=False)
        assert ids == hf.encode(text) and tok.decode(ids) == text
    with pytest.raises(ValueError, match="vocab_path"):
        phi4_tokenizer()
