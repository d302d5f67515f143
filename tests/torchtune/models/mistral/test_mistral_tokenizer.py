"""MistralTokenizer against transformers: one tiny SentencePiece model, loaded by our tokenizer and
by transformers' ``LlamaTokenizer`` (the class Mistral's Hub repos name), with Mistral-7B-Instruct's
chat template written out below as the Jinja of its ``tokenizer_config.json``."""

import json

import pytest

from tests.test_utils.tokenizer_fixtures import random_chats, train_sentencepiece
from torchtune.data import Message, OpenAIToMessages
from torchtune.models.mistral import MistralChatTemplate, MistralTokenizer, mistral_tokenizer

# Mistral-7B-Instruct v0.1 / v0.2 (and Mixtral-8x7B-Instruct) template, system-message version.
MISTRAL_TEMPLATE = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported!') }}
    {%- endif %}
{%- endfor %}"""

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
def sp_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mistral_tok")
    train_sentencepiece(directory)
    return directory


@pytest.fixture(scope="module")
def tok(sp_dir):
    return mistral_tokenizer(str(sp_dir / "tokenizer.model"))


@pytest.fixture(scope="module", params=[False, True], ids=["legacy_false", "legacy_true"])
def hf(sp_dir, request, tmp_path_factory):
    """transformers' tokenizer converted from the same ``tokenizer.model``, both legacy modes."""
    from transformers import AutoTokenizer

    directory = tmp_path_factory.mktemp("hf_mistral")
    (directory / "tokenizer.model").write_bytes((sp_dir / "tokenizer.model").read_bytes())
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": request.param, "chat_template": MISTRAL_TEMPLATE,
    }))
    return AutoTokenizer.from_pretrained(str(directory))


def hf_ids(hf, chat, **kwargs):
    return list(hf.apply_chat_template(chat, tokenize=True, return_dict=False, **kwargs))


@pytest.mark.parametrize("chat", [CHAT, CHAT[1:], CHAT[1:3]], ids=["system", "no_system", "one_turn"])
def test_chat_matches_hf(tok, hf, chat):
    tokens, mask = tok.tokenize_messages(to_messages(chat))
    assert tokens == hf_ids(hf, chat)
    assert tokens.count(tok.bos_id) == 1 and tokens.count(tok.eos_id) == len(chat) // 2
    assert len(mask) == len(tokens)


@pytest.mark.parametrize("chat", [CHAT[:4], CHAT[1:2]], ids=["multi_turn", "first_turn"])
def test_generation_prompt_matches_hf(tok, hf, chat):
    prompt = tok({"messages": to_messages(chat)}, inference=True)["tokens"]
    assert prompt == hf_ids(hf, chat, add_generation_prompt=True)
    assert prompt[-1] != tok.eos_id


def expected_mask(hf, chat, train_on_input):
    """The mask from transformers' offsets: a token is trained if its first character lies in an
    assistant reply (from the space before it to its ``</s>``) or, with ``train_on_input``, in the
    conversation after the system prompt."""
    rendered = hf.apply_chat_template(chat, tokenize=False)
    spans, cursor = [], 0
    for m in chat:
        start = rendered.index(m["content"], cursor)
        cursor = start + len(m["content"])
        if m["role"] == "assistant":
            spans.append((start - 1, cursor + len("</s>")))
    if train_on_input:
        spans = [(rendered.index(chat[1]["content"]), len(rendered))]
    enc = hf(rendered, add_special_tokens=False, return_offsets_mapping=True)
    return [not any(a <= begin < b for a, b in spans) for begin, _ in enc["offset_mapping"]]


@pytest.mark.parametrize("train_on_input", [False, True])
def test_masks_follow_train_on_input(tok, hf, train_on_input):
    tokens, mask = tok.tokenize_messages(to_messages(CHAT, train_on_input))
    assert mask == expected_mask(hf, CHAT, train_on_input)
    trained = [t for t, m in zip(tokens, mask) if not m]
    if not train_on_input:
        assert tok.decode(trained) == "The capital of France is Paris. Tokyo. 1, 2, 3!"
        assert trained.count(tok.eos_id) == 2


def test_template_text(tok):
    tokens, _ = tok.tokenize_messages(to_messages(CHAT))
    assert tok.decode(tokens) == (
        "[INST] You are a helpful assistant.\n\nWhat is the capital of France? [/INST] "
        "The capital of France is Paris. [INST] And of Japan? Count to 3. [/INST] Tokyo. 1, 2, 3!"
    )
    formatted = MistralChatTemplate()(to_messages(CHAT))
    assert [m.masked for m in formatted] == [True, True, False, True, False]


@pytest.mark.parametrize("messages", [
    [Message("user", "hi"), Message("system", "late")],
    [Message("system", "alone")],
    [Message("system", "s"), Message("assistant", "a")],
])
def test_misplaced_system_message(tok, messages):
    with pytest.raises(ValueError, match="system message must be the first"):
        tok.tokenize_messages(messages)


def test_no_template(sp_dir):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_dir / "tokenizer.model"))
    plain = mistral_tokenizer(str(sp_dir / "tokenizer.model"), prompt_template=None)
    messages = [Message("user", "hello there ", masked=True), Message("assistant", "general kenobi")]
    tokens, mask = plain.tokenize_messages(messages)
    assert tokens == [1] + sp.encode("hello there general kenobi") + [2]
    assert mask[0] is True and mask[-1] is False


def test_truncation(sp_dir, tok):
    path = str(sp_dir / "tokenizer.model")
    full, _ = tok.tokenize_messages(to_messages(CHAT))
    tokens, mask = mistral_tokenizer(path, max_seq_len=20).tokenize_messages(to_messages(CHAT))
    assert tokens == full[:19] + [tok.eos_id] and len(mask) == 20
    prompt, _ = mistral_tokenizer(path, max_seq_len=20).tokenize_messages(to_messages(CHAT), add_eos=False)
    assert len(prompt) == 20 and prompt[-1] != tok.eos_id
    left = mistral_tokenizer(path, max_seq_len=20, truncation_type="left")
    assert left.tokenize_messages(to_messages(CHAT))[0] == full[-20:]


def test_encode_decode_and_properties(sp_dir, tok):
    text = "Round trip: ünïcödé, 😀, tabs\tand\nnewlines."
    assert tok.decode(tok.encode(text)) == text
    ids = tok.encode("hi", add_bos=False, add_eos=False, trim_leading_whitespace=True)
    assert tok.encode("hi") == [tok.bos_id] + tok.encode("hi", add_bos=False, add_eos=False) + [tok.eos_id]
    assert tok.decode(ids) == "hi"
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.stop_tokens) == (1, 2, 0, [2])
    assert tok.special_tokens == {"<s>": 1, "</s>": 2}
    assert isinstance(tok, MistralTokenizer) and isinstance(tok.prompt_template, MistralChatTemplate)
    sample = {"messages": to_messages(CHAT), "id": 1}
    out = tok(sample)
    assert out["id"] == 1 and "messages" in sample
    assert (out["tokens"], out["mask"]) == tok.tokenize_messages(to_messages(CHAT))


def test_random_chats_match_hf(tok, hf):
    for chat in random_chats(25, seed=3):
        assert tok.tokenize_messages(to_messages(chat))[0] == hf_ids(hf, chat), chat
