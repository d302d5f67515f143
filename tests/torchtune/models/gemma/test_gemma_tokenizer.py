"""GemmaTokenizer against transformers: one tiny SentencePiece model with Gemma's special-token
layout (<pad> 0, <eos> 1, <bos> 2, <unk> 3, the turn markers as user-defined pieces, no dummy
prefix), loaded by our tokenizer and by transformers' ``GemmaTokenizer``, with Gemma 3's chat
template written out below as the Jinja of its ``tokenizer_config.json``."""

import json

import pytest

from tests.test_utils.tokenizer_fixtures import random_chats
from tests.torchtune.models.gemma.gemma_reference import train_gemma_sentencepiece
from torchtune.data import Message, OpenAIToMessages
from torchtune.models.gemma import GemmaChatTemplate, GemmaTokenizer, gemma_tokenizer

# google/gemma-3-*-it chat template (text part); Gemma 1 and 2's is the same without system messages.
GEMMA_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {{- message['content'] | trim -}}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""

CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France? "},
    {"role": "assistant", "content": " The capital of France is Paris."},
    {"role": "user", "content": "And of Japan?\nCount to 3."},
    {"role": "assistant", "content": "Tokyo. 1, 2, 3!"},
]


def to_messages(chat, train_on_input=False):
    return OpenAIToMessages(train_on_input=train_on_input)({"messages": chat})["messages"]


@pytest.fixture(scope="module")
def sp_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gemma_tok")
    train_gemma_sentencepiece(directory)
    return directory


@pytest.fixture(scope="module")
def tok(sp_dir):
    return gemma_tokenizer(str(sp_dir / "tokenizer.model"), prompt_template="torchtune.models.gemma.GemmaChatTemplate")


@pytest.fixture(scope="module")
def hf(sp_dir, tmp_path_factory):
    """transformers' GemmaTokenizer converted from the same ``tokenizer.model``."""
    from transformers import AutoTokenizer

    directory = tmp_path_factory.mktemp("hf_gemma")
    (directory / "tokenizer.model").write_bytes((sp_dir / "tokenizer.model").read_bytes())
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>",
        "pad_token": "<pad>", "add_bos_token": True, "add_eos_token": False, "chat_template": GEMMA_TEMPLATE,
    }))
    return AutoTokenizer.from_pretrained(str(directory))


def hf_ids(hf, chat, **kwargs):
    return list(hf.apply_chat_template(chat, tokenize=True, return_dict=False, **kwargs))


@pytest.mark.parametrize("chat", [CHAT, CHAT[1:], CHAT[1:3]], ids=["system", "no_system", "one_turn"])
def test_chat_matches_hf(tok, hf, chat):
    tokens, mask = tok.tokenize_messages(to_messages(chat))
    # Training sequences end with <eos> after the last reply; Gemma's template has no EOS.
    assert tokens == hf_ids(hf, chat) + [tok.eos_id]
    assert tokens.count(tok.bos_id) == 1 and len(mask) == len(tokens)
    assert tokens[1] == tok._spm_model.spm_model.piece_to_id("<start_of_turn>")  # one piece per marker


@pytest.mark.parametrize("chat", [CHAT[:4], CHAT[1:2]], ids=["multi_turn", "first_turn"])
def test_generation_prompt_matches_hf(tok, hf, chat):
    prompt = tok({"messages": to_messages(chat)}, inference=True)["tokens"]
    assert prompt == hf_ids(hf, chat, add_generation_prompt=True)


def test_random_chats_match_hf(tok, hf):
    for chat in random_chats(25, seed=5):
        assert tok.tokenize_messages(to_messages(chat))[0] == hf_ids(hf, chat) + [tok.eos_id], chat


def test_only_replies_are_trained(tok):
    tokens, mask = tok.tokenize_messages(to_messages(CHAT))
    trained = [t for t, m in zip(tokens, mask) if not m]
    sp = tok._spm_model.spm_model
    end = sp.piece_to_id("<end_of_turn>")
    assert trained.count(end) == 2 and trained[-1] == tok.eos_id
    assert sp.decode([t for t in trained if t not in (end, tok.eos_id)]) == (
        "The capital of France is Paris.\nTokyo. 1, 2, 3!\n")
    formatted = GemmaChatTemplate()(to_messages(CHAT))
    assert [m.masked for m in formatted] == [True, True, False, True, False]


def test_stop_tokens_and_special_ids(tok):
    sp = tok._spm_model.spm_model
    assert (tok.pad_id, tok.eos_id, tok.bos_id) == (0, 1, 2)
    assert tok.stop_tokens == [1, sp.piece_to_id("<end_of_turn>")]
    assert isinstance(tok, GemmaTokenizer)


def test_no_template_and_bad_roles(sp_dir, tok):
    plain = gemma_tokenizer(str(sp_dir / "tokenizer.model"))
    assert plain.prompt_template is None
    tokens, _ = plain.tokenize_messages([Message("user", "hello there ", masked=True), Message("assistant", "kenobi")])
    assert tokens == [2] + plain.encode("hello there kenobi", add_bos=False, add_eos=False) + [1]
    with pytest.raises(ValueError, match="system message must be the first"):
        tok.tokenize_messages([Message("user", "hi"), Message("system", "late")])
    with pytest.raises(ValueError, match="no 'ipython' role"):
        tok.tokenize_messages([Message("user", "hi"), Message("ipython", "x")])


def test_truncation(sp_dir, tok):
    full, _ = tok.tokenize_messages(to_messages(CHAT))
    short = gemma_tokenizer(str(sp_dir / "tokenizer.model"), max_seq_len=20,
                            prompt_template="torchtune.models.gemma.GemmaChatTemplate")
    tokens, mask = short.tokenize_messages(to_messages(CHAT))
    assert tokens == full[:19] + [tok.eos_id] and len(mask) == 20
