"""The Llama 2 tokenizer (also Code Llama 2's) against transformers' ``LlamaTokenizer`` with
Llama-2-chat's chat template, written out below as the Jinja of its ``tokenizer_config.json``.

Meta's reference encodes each turn as ``BOS + "[INST] {user} [/INST] {answer} " + EOS``: the space
after the answer gives a ``▁`` token before EOS, and the dummy prefix gives ``▁`` before ``[INST]``.
transformers reproduces that with ``legacy=True``, which is what we compare with.
"""

import json

import pytest

from tests.test_utils.tokenizer_fixtures import random_chats, train_sentencepiece
from torchtune.data import OpenAIToMessages
from torchtune.models.llama2 import llama2_tokenizer

LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "Paris."},
     {"role": "user", "content": "And of Japan? Count to 3."},
     {"role": "assistant", "content": "Tokyo. 1, 2, 3!"}],
]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    from transformers import AutoTokenizer

    sp_dir = tmp_path_factory.mktemp("llama2_tok")
    train_sentencepiece(sp_dir)
    hf_dir = tmp_path_factory.mktemp("hf_llama2")
    (hf_dir / "tokenizer.model").write_bytes((sp_dir / "tokenizer.model").read_bytes())
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "legacy": True, "chat_template": LLAMA2_CHAT_TEMPLATE,
    }))
    return llama2_tokenizer(str(sp_dir / "tokenizer.model")), AutoTokenizer.from_pretrained(str(hf_dir))


def _ours(tok, chat, train_on_input=False):
    messages = OpenAIToMessages(train_on_input=train_on_input)({"messages": chat})["messages"]
    return tok.tokenize_messages(messages)


def _llama2_shaped(chat):
    """An optional leading system message, then user/assistant turns ending with an answer."""
    roles = [m["role"] for m in (chat[1:] if chat[0]["role"] == "system" else chat)]
    return len(roles) > 0 and len(roles) % 2 == 0 and roles == ["user", "assistant"] * (len(roles) // 2)


RANDOM = [c for c in random_chats(60) if _llama2_shaped(c)]


@pytest.mark.parametrize("chat", CHATS + RANDOM)
def test_conversation_ids_equal_the_chat_template(tokenizers, chat):
    ours, hf = tokenizers
    chat = [dict(m, content=m["content"].strip()) for m in chat]  # the template strips each message
    tokens, _ = _ours(ours, chat)
    assert tokens == list(hf.apply_chat_template(chat, tokenize=True, return_dict=False))


def test_random_conversations_are_used():
    assert len(RANDOM) >= 10


def test_only_answers_are_trained_and_text_round_trips(tokenizers):
    ours, _ = tokenizers
    tokens, mask = _ours(ours, CHATS[1])
    trained = ours.decode([t for t, m in zip(tokens, mask) if not m])
    assert "Paris." in trained and "Tokyo. 1, 2, 3!" in trained and "France" not in trained
    text = "The capital of Japan is Tokyo, 1 2 3."
    assert ours.decode(ours.encode(text)) == text
