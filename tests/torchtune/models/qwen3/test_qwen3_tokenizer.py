"""Qwen3 tokenizer against transformers: the tiny Qwen-style BPE of ``qwen2/tokenizer_files.py`` with
Qwen3's special tokens, and Qwen3's chat template written out below as the Jinja of its
``tokenizer_config.json`` (without the tool-definition branch, which needs ``tools=``)."""

import pytest

from tests.torchtune.models.qwen2.tokenizer_files import QWEN3_EXTRA, hf_chat_ids, write_qwen_tokenizer_files
from torchtune.data import Message, OpenAIToMessages
from torchtune.models.qwen3 import qwen3_tokenizer

QWEN3_TEMPLATE = """{%- if messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.content is string %}
        {%- set content = message.content %}
    {%- else %}
        {%- set content = '' %}
    {%- endif %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set reasoning_content = '' %}
        {%- if message.reasoning_content is string %}
            {%- set reasoning_content = message.reasoning_content %}
        {%- else %}
            {%- if '</think>' in content %}
                {%- set reasoning_content = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}
                {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
            {%- endif %}
        {%- endif %}
        {%- if loop.index0 > ns.last_query_index %}
            {%- if loop.last or (not loop.last and reasoning_content) %}
                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}
            {%- else %}
                {{- '<|im_start|>' + message.role + '\\n' + content }}
            {%- endif %}
        {%- else %}
            {{- '<|im_start|>' + message.role + '\\n' + content }}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and content) or (not loop.first) %}
                    {{- '\\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}"""

THINKING_CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "<think>\nLet me think step by step: 2 + 2 = 4.\n</think>\n\nThe answer is 4."},
    {"role": "user", "content": "And 3 + 3?"},
    {"role": "assistant", "content": "<think>\n3 + 3 = 6.\n</think>\n\n6."},
]
PLAIN_CHAT = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Japan?"},
    {"role": "assistant", "content": "Tokyo."},
]


def to_messages(chat):
    return OpenAIToMessages(train_on_input=False)({"messages": chat})["messages"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_qwen_tokenizer_files(tmp_path_factory.mktemp("qwen3_tok"), QWEN3_EXTRA)


@pytest.fixture(scope="module")
def tok(files):
    return qwen3_tokenizer(str(files[2]))  # tokenizer.json: vocabulary, merges and special tokens


@pytest.mark.parametrize("chat", [THINKING_CHAT, PLAIN_CHAT, THINKING_CHAT[:3], PLAIN_CHAT[:2]])
def test_conversation_matches_chat_template(files, tok, chat):
    hf = files[-1]
    tokens, mask = tok.tokenize_messages(to_messages(chat))
    assert tokens == hf_chat_ids(hf, QWEN3_TEMPLATE, chat)


def test_reasoning_trained_only_in_the_last_turn(tok):
    tokens, mask = tok.tokenize_messages(to_messages(THINKING_CHAT))
    text = tok.decode(tokens)
    assert "step by step" not in text  # the first turn's reasoning is dropped
    trained = tok.decode([t for t, m in zip(tokens, mask) if not m])
    assert trained == ("<|im_start|>assistant\nThe answer is 4.<|im_end|>\n"
                       "<|im_start|>assistant\n<think>\n3 + 3 = 6.\n</think>\n\n6.<|im_end|>\n")
    # Without reasoning, the final answer gets the empty think block (thinking switched off).
    tokens, mask = tok.tokenize_messages(to_messages(PLAIN_CHAT))
    assert tok.decode([t for t, m in zip(tokens, mask) if not m]).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\nTokyo.<|im_end|>\n")
    assert tok.special_tokens["<think>"] in tokens


@pytest.mark.parametrize("enable_thinking", [True, False])
def test_generation_prompt_enable_thinking(files, enable_thinking):
    hf = files[-1]
    tok = qwen3_tokenizer(str(files[0]), str(files[1]), special_tokens_path=str(files[2]),
                          enable_thinking=enable_thinking)
    prompt = tok({"messages": to_messages(THINKING_CHAT[:4])}, inference=True)["tokens"]
    assert prompt == hf_chat_ids(hf, QWEN3_TEMPLATE, THINKING_CHAT[:4], add_generation_prompt=True,
                                 enable_thinking=enable_thinking)


def test_tool_call_matches_chat_template(files, tok):
    hf = files[-1]
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    hf_chat = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]},
        {"role": "tool", "content": '{"temperature_c": 18}'},
        {"role": "assistant", "content": "<think>\nIt is 18.\n</think>\n\n18 degrees."},
    ]
    messages = [
        Message(role="user", content=hf_chat[0]["content"], masked=True),
        Message(role="assistant", content='{"name": "get_weather", "arguments": {"city": "Paris"}}', ipython=True),
        Message(role="tool", content=hf_chat[2]["content"], masked=True),
        Message(role="assistant", content=hf_chat[3]["content"]),
    ]
    assert tok.tokenize_messages(messages)[0] == hf_chat_ids(hf, QWEN3_TEMPLATE, hf_chat)


def test_encode_decode_round_trip(tok):
    text = "<think>\nsteps\n</think>\n\nÜnïcödé 😀 answer 12345"
    ids = tok.encode(text, add_eos=False)
    assert ids[0] == tok.special_tokens["<think>"] and tok.decode(ids) == text
