"""Qwen2 and Qwen2.5 tokenizers against transformers: one tiny byte-level BPE, read by ours from
``vocab.json`` + ``merges.txt`` (and from ``tokenizer.json``) and by transformers' ``Qwen2Tokenizer``,
with the chat templates of Qwen2-Instruct and Qwen2.5-Instruct written out below as the Jinja of their
``tokenizer_config.json`` (Qwen2.5's without its tool-definition branch, which needs ``tools=``)."""

import pytest

from tests.test_utils.tokenizer_fixtures import random_chats
from tests.torchtune.models.qwen2.tokenizer_files import QWEN2_5_EXTRA, hf_chat_ids, write_qwen_tokenizer_files
from torchtune.data import Message, OpenAIToMessages
from torchtune.models.qwen2 import Qwen2Tokenizer, qwen2_tokenizer
from torchtune.models.qwen2_5 import qwen2_5_tokenizer
from torchtune.modules.transforms.tokenizers import GPT2BaseTokenizer

QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

QWEN2_5_TEMPLATE = """{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And of Japan? Count to 3.\n\n"},
    {"role": "assistant", "content": "\nTokyo. 1, 2, 3! Ünïcödé 😀"},
]


def to_messages(chat, train_on_input=False):
    return OpenAIToMessages(train_on_input=train_on_input)({"messages": chat})["messages"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_qwen_tokenizer_files(tmp_path_factory.mktemp("qwen2_tok"), QWEN2_5_EXTRA)


@pytest.fixture(scope="module")
def qwen2(files):
    vocab, merges, tokenizer_json, _, _ = files
    return qwen2_tokenizer(str(vocab), str(merges), special_tokens_path=str(tokenizer_json))


@pytest.fixture(scope="module")
def qwen2_5(files):
    vocab, merges, tokenizer_json, _, _ = files
    return qwen2_5_tokenizer(str(vocab), str(merges), special_tokens_path=str(tokenizer_json))


def test_base_encode_matches_transformers_and_round_trips(files):
    vocab, merges, tokenizer_json, special, hf = files
    ours = [qwen2_tokenizer(str(vocab), str(merges), special_tokens_path=str(tokenizer_json)),
            qwen2_tokenizer(str(tokenizer_json))]  # vocab, merges and special tokens from one file
    texts = [m["content"] for chat in random_chats(30) for m in chat]
    texts += ["  leading and trailing  ", "x\n\n\ny", "e\u0301 (NFC: é)", "1234567", "<|im_start|>in data", ""]
    for tok in ours:
        assert tok.special_tokens == special
        for text in texts:
            ids = tok.encode(text, add_eos=False)
            assert ids == hf.encode(text), text
            assert tok.decode(ids) == hf.decode(ids)
            if "\u0301" not in text:  # NFC changes the text itself
                assert tok.decode(ids) == text
    assert ours[0].encode("Hi") == ours[0].encode("Hi", add_eos=False) + [special["<|im_end|>"]]


def test_gpt2_base_tokenizer_bpe_and_decode(files):
    vocab, merges, _, _, hf = files
    base = GPT2BaseTokenizer(str(vocab), str(merges), bos_id=None, eos_id=None)
    # GPT-2's own regex keeps " 123" in one piece, so the ids differ from Qwen's digit split only there.
    assert base.encode("Hello world", add_bos=False, add_eos=False) == hf.encode("Hello world")
    assert base.bpe("Ġworld") == " ".join(hf.tokenize(" world"))
    assert base.decode(base.encode("Ünïcödé 😀 and \t tabs")) == "Ünïcödé 😀 and \t tabs"
    with pytest.raises(ValueError, match="merges"):
        GPT2BaseTokenizer(str(vocab), None)


@pytest.mark.parametrize("system", [True, False])
def test_qwen2_conversation_matches_chat_template(files, system):
    vocab, merges, tokenizer_json, _, hf = files
    chat = CHAT if system else CHAT[1:]
    tok = qwen2_tokenizer(str(vocab), str(merges), special_tokens_path=str(tokenizer_json),
                          default_system_prompt="You are a helpful assistant.")
    tokens, mask = tok.tokenize_messages(to_messages(chat))
    assert tokens == hf_chat_ids(hf, QWEN2_TEMPLATE, chat)
    prompt = tok({"messages": to_messages(chat[:-1])}, inference=True)
    assert prompt["tokens"] == hf_chat_ids(hf, QWEN2_TEMPLATE, chat[:-1], add_generation_prompt=True)


def test_qwen2_masks_train_only_assistant_messages(qwen2):
    tokens, mask = qwen2.tokenize_messages(to_messages(CHAT))
    trained = [t for t, m in zip(tokens, mask) if not m]
    expected = []
    for reply in (CHAT[2], CHAT[4]):
        expected += qwen2.encode(f"<|im_start|>assistant\n{reply['content']}<|im_end|>\n", add_eos=False)
    assert trained == expected
    assert qwen2.decode(trained, skip_special_tokens=True) == \
        f"assistant\n{CHAT[2]['content']}\nassistant\n{CHAT[4]['content']}\n"
    assert len(tokens) == len(mask)


def test_qwen2_max_seq_len_truncates(files):
    vocab, merges, tokenizer_json, special, _ = files
    tok = qwen2_tokenizer(str(vocab), str(merges), special_tokens_path=str(tokenizer_json), max_seq_len=20)
    tokens, mask = tok.tokenize_messages(to_messages(CHAT))
    assert len(tokens) == len(mask) == 20 and tokens[-1] == special["<|im_end|>"]


def test_qwen2_rejects_unknown_named_token(files):
    vocab, merges, tokenizer_json, special, _ = files
    with pytest.raises(ValueError, match="<none>"):
        Qwen2Tokenizer(str(vocab), str(merges), special_tokens=special, pad_token="<none>")


@pytest.mark.parametrize("system", [True, False])
def test_qwen2_5_conversation_matches_chat_template(files, qwen2_5, system):
    hf = files[-1]
    chat = CHAT if system else CHAT[1:]
    tokens, _ = qwen2_5.tokenize_messages(to_messages(chat))
    assert tokens == hf_chat_ids(hf, QWEN2_5_TEMPLATE, chat)  # the default system prompt when none
    prompt = qwen2_5({"messages": to_messages(chat[:-1]) + [Message(role="assistant", content="")]}, inference=True)
    assert prompt["tokens"] == hf_chat_ids(hf, QWEN2_5_TEMPLATE, chat[:-1], add_generation_prompt=True)


def test_qwen2_5_tool_calls_match_chat_template(files, qwen2_5):
    hf = files[-1]
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    hf_chat = [
        {"role": "user", "content": "What is the weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]},
        {"role": "tool", "content": '{"temperature_c": 18}'},
        {"role": "tool", "content": '{"temperature_c": 21}'},
        {"role": "assistant", "content": "18 degrees in Paris, 21 in Rome."},
    ]
    messages = [
        Message(role="user", content=hf_chat[0]["content"], masked=True),
        Message(role="assistant", content='{"name": "get_weather", "arguments": {"city": "Paris"}}', ipython=True),
        Message(role="ipython", content=hf_chat[2]["content"], masked=True),
        Message(role="tool", content=hf_chat[3]["content"], masked=True),
        Message(role="assistant", content=hf_chat[4]["content"]),
    ]
    tokens, mask = qwen2_5.tokenize_messages(messages)
    assert tokens == hf_chat_ids(hf, QWEN2_5_TEMPLATE, hf_chat)
    trained = qwen2_5.decode([t for t, m in zip(tokens, mask) if not m])
    assert trained == ('<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
                       '</tool_call><|im_end|>\n<|im_start|>assistant\n18 degrees in Paris, 21 in Rome.<|im_end|>\n')


def test_qwen2_5_random_conversations_match_chat_template(files, qwen2_5):
    hf = files[-1]
    for chat in random_chats(20, seed=1):
        assert qwen2_5.tokenize_messages(to_messages(chat))[0] == hf_chat_ids(hf, QWEN2_5_TEMPLATE, chat)
