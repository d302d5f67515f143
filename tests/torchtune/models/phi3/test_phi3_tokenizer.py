"""Phi3MiniTokenizer against transformers: one tiny SentencePiece model, loaded by our tokenizer and
by transformers' ``LlamaTokenizer`` (the class Phi-3's Hub repo names) with Phi-3's added special
tokens at the same offsets above the vocabulary, and Phi-3-mini-4k-instruct's chat template below.

Whitespace: Phi-3's ``tokenizer_config.json`` sets ``legacy=False`` (no dummy-prefix space on
text after a special token) and marks its role and ``<|end|>`` tokens ``rstrip=True`` (the token
absorbs the whitespace after it, so the template's newlines produce no ids). Our default follows
that configuration; ``strip_after_special_tokens=False`` is compared with the same tokens marked
``rstrip=False`` (the newlines stay, as ``<0x0A>``). transformers' ``legacy=True`` would instead
put a ``▁`` before each such newline, an artifact of the dummy prefix and no part of the format.

BOS/EOS: upstream torchtune opens the conversation with BOS and, with ``add_eos``, closes every
assistant message with EOS and opens the next turn with BOS again; Phi-3's template has no BOS
(``add_bos_token`` is False) and one ``<|endoftext|>`` at the end of the conversation. We keep
upstream's single leading BOS (Phi-3 was released with ``add_bos_token=True``, and a torchtune user's
data starts the same way), so the expected ids are ``[bos] + transformers' ids``; inside and at the
end of the conversation we follow the template (one final EOS), since the extra EOS/BOS pairs
would teach the model to end a conversation after each reply.
"""

import json

import pytest

from tests.test_utils.tokenizer_fixtures import random_chats, train_sentencepiece
from torchtune.data import Message, OpenAIToMessages
from torchtune.models.phi3 import Phi3MiniTokenizer, phi3_mini_tokenizer

# Phi-3-mini-4k-instruct's chat template (system-message version).
PHI3_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
NAMES = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
         "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>"]
VOCAB = 512

CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And of Japan? Count to 3."},
    {"role": "assistant", "content": "Tokyo. 1, 2, 3!"},
]


def to_messages(chat, train_on_input=False):
    return OpenAIToMessages(train_on_input=train_on_input)({"messages": chat})["messages"]


@pytest.fixture(scope="module")
def sp_path(tmp_path_factory):
    return str(train_sentencepiece(tmp_path_factory.mktemp("phi3_tok"), vocab_size=VOCAB))


@pytest.fixture(scope="module")
def tok(sp_path):
    return phi3_mini_tokenizer(sp_path)


def make_hf(sp_path, directory, rstrip):
    from transformers import AutoTokenizer

    (directory / "tokenizer.model").write_bytes(open(sp_path, "rb").read())
    added = {
        # As in Phi-3's config: <|endoftext|> keeps what follows it, the other tokens rstrip.
        str(VOCAB + k): {"content": name, "lstrip": False, "normalized": False, "rstrip": rstrip and k > 0,
                         "single_word": False, "special": True}
        for k, name in enumerate(NAMES)
    }
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": "<unk>", "add_bos_token": False, "add_eos_token": False,
        "legacy": False, "added_tokens_decoder": added, "chat_template": PHI3_TEMPLATE,
    }))
    hf = AutoTokenizer.from_pretrained(str(directory))
    assert hf.convert_tokens_to_ids(NAMES) == list(range(VOCAB, VOCAB + len(NAMES)))
    return hf


@pytest.fixture(scope="module", params=[True, False], ids=["rstrip_as_phi3", "keep_newlines"])
def pair(sp_path, request, tmp_path_factory):
    """(our tokenizer, transformers' tokenizer) with the same whitespace handling."""
    ours = Phi3MiniTokenizer(sp_path, strip_after_special_tokens=request.param)
    return ours, make_hf(sp_path, tmp_path_factory.mktemp("hf_phi3"), rstrip=request.param)


def hf_ids(hf, chat, **kwargs):
    return list(hf.apply_chat_template(chat, tokenize=True, return_dict=False, **kwargs))


@pytest.mark.parametrize("chat", [CHAT, CHAT[1:], CHAT[1:3]], ids=["system", "no_system", "one_turn"])
def test_chat_matches_hf(pair, chat):
    tok, hf = pair
    tokens, mask = tok.tokenize_messages(to_messages(chat), add_eos=True)
    assert tokens == [tok.bos_id] + hf_ids(hf, chat)
    assert tokens.count(tok.eos_id) == 1 and tokens[-1] == tok.eos_id and len(mask) == len(tokens)
    assert tokens.count(tok.special_tokens["<|end|>"]) == len(chat)


@pytest.mark.parametrize("chat", [CHAT[:4], CHAT[1:2]], ids=["multi_turn", "first_turn"])
def test_generation_prompt_matches_hf(pair, chat):
    tok, hf = pair
    expected = [tok.bos_id] + hf_ids(hf, chat, add_generation_prompt=True)
    assert tok({"messages": to_messages(chat)}, inference=True)["tokens"] == expected
    # The generate recipe's form: an empty assistant message left open.
    with_empty = to_messages(chat) + [Message("assistant", "")]
    assert tok.tokenize_messages(with_empty)[0] == expected


def test_random_chats_match_hf(pair):
    tok, hf = pair
    for chat in random_chats(25, seed=5):
        assert tok.tokenize_messages(to_messages(chat), add_eos=True)[0] == [tok.bos_id] + hf_ids(hf, chat), chat


def test_default_layout_keeps_newlines_when_asked(sp_path):
    tok = Phi3MiniTokenizer(sp_path, strip_after_special_tokens=False)
    tokens, _ = tok.tokenize_messages(to_messages(CHAT), add_eos=True)
    rendered = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in CHAT) + "<|endoftext|>"
    assert tok.decode(tokens, skip_special_tokens=False) == rendered
    assert tok.decode(tokens) == "".join(f"\n{m['content']}\n" for m in CHAT)


@pytest.mark.parametrize("train_on_input", [False, True])
def test_masks(tok, train_on_input):
    messages = to_messages(CHAT, train_on_input)
    tokens, mask = tok.tokenize_messages(messages, add_eos=True)
    trained = [t for t, m in zip(tokens, mask) if not m]
    s = tok.special_tokens
    if train_on_input:
        # OpenAIToMessages keeps the system prompt masked.
        assert mask[:1] == [True] and trained[0] == s["<|user|>"]
        assert tok.decode(trained) == "".join(m["content"] for m in CHAT[1:])
    else:
        assert trained[0] == s["<|assistant|>"] and trained[-2:] == [s["<|end|>"], tok.eos_id]
        assert trained.count(s["<|assistant|>"]) == 2 and s["<|user|>"] not in trained
        assert tok.decode(trained) == "The capital of France is Paris.Tokyo. 1, 2, 3!"


def test_ignore_system_prompt(tok):
    full = tok.tokenize_messages(to_messages(CHAT), add_eos=True, ignore_system_prompt=True)
    assert full == tok.tokenize_messages(to_messages(CHAT[1:]), add_eos=True)


def test_truncation(sp_path, tok):
    full, _ = tok.tokenize_messages(to_messages(CHAT), add_eos=True)
    short = phi3_mini_tokenizer(sp_path, max_seq_len=20)
    tokens, mask = short.tokenize_messages(to_messages(CHAT), add_eos=True)
    assert tokens == full[:19] + [tok.eos_id] and len(mask) == 20
    prompt, _ = short.tokenize_messages(to_messages(CHAT[:2]))
    assert len(prompt) == 20 and tok.eos_id not in prompt


def test_special_tokens_from_tokenizer_json(sp_path, tmp_path):
    # A tokenizer.json at Phi-3's real ids, as special_tokens_path reads it.
    added = [{"id": 32000 + k, "content": name, "special": True} for k, name in enumerate(NAMES)]
    (tmp_path / "tokenizer.json").write_text(json.dumps({"added_tokens": added}))
    tok = phi3_mini_tokenizer(sp_path, special_tokens_path=str(tmp_path / "tokenizer.json"))
    assert (tok.eos_id, tok.pad_id, tok.stop_tokens) == (32000, 32000, [32000, 32007])
    assert tok.tokenize_messages(to_messages(CHAT[1:2]))[0][:2] == [tok.bos_id, 32010]
    with pytest.raises(ValueError, match="lacks"):
        Phi3MiniTokenizer(sp_path, special_tokens={"<|endoftext|>": 32000})


def test_encode_decode_and_properties(tok):
    text = "Round trip: ünïcödé, 😀, tabs\tand\nnewlines."
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("hi") == [tok.bos_id] + tok.encode("hi", add_bos=False, add_eos=False) + [tok.eos_id]
    assert tok.decode(tok.encode("hi", add_bos=False, add_eos=False, trim_leading_whitespace=True)) == "hi"
    assert tok.special_tokens == {name: VOCAB + k for k, name in enumerate(NAMES)}
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (1, VOCAB, VOCAB, VOCAB)
    assert tok.stop_tokens == [VOCAB, VOCAB + 7]
    # Unused embedding rows (Phi-3's 32064 - 32011) and special tokens decode to nothing.
    assert tok.decode([VOCAB + 10] + tok.encode("hi", add_bos=False, add_eos=False) + [VOCAB + 40]) == "hi"
    with pytest.raises(ValueError, match="neither"):
        tok.decode([VOCAB + 40], skip_special_tokens=False)
    sample = {"messages": to_messages(CHAT), "id": 1}
    out = tok(sample)
    assert out["id"] == 1 and "messages" in sample
    assert (out["tokens"], out["mask"]) == tok.tokenize_messages(to_messages(CHAT), add_eos=True)


def test_rejects_unknown_role(tok):
    with pytest.raises(ValueError, match="ipython"):
        tok.tokenize_messages([Message("ipython", "x")])
