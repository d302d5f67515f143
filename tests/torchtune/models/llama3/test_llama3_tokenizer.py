"""Llama3Tokenizer against transformers: the same tiny BPE on both sides (a tiktoken file and the
``tokenizer.json`` transformers' converter makes from it), and Meta's chat templates written out
below as the Jinja that ships in the Llama 3 / 3.1 ``tokenizer_config.json``."""

import json

import pytest

from tests.test_utils.tokenizer_fixtures import random_chats
from tests.torchtune.models.llama3.tokenizer_files import (
    llama3_special_token_names,
    load_hf_tokenizer,
    write_llama3_tokenizer_files,
)
from torchtune.data import Message, OpenAIToMessages
from torchtune.models.llama3 import Llama3Tokenizer, llama3_tokenizer
from torchtune.models.llama3._tokenizer import LLAMA3_SPECIAL_TOKENS, llama3_special_tokens

# Meta-Llama-3-8B-Instruct's template.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Llama 3.1 Instruct's template: the system block with the knowledge/today dates and the builtin
# tools, tool calls (builtin ones as <|python_tag|>name.call(...) ending in <|eom_id|>, others as
# JSON), ipython results. The custom-tool instructions (``tools=``) are left out.
LLAMA31_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}{%- set date_string = "26 Jul 2024" %}{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined %}
    {{- "Environment: ipython\\n" }}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}{{- ", " }}{%- endif %}
            {%- endfor %}
            {{- ")" }}
        {%- else %}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}{{- "<|eom_id|>" }}{%- else %}{{- "<|eot_id|>" }}{%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}
"""

DATE_PREAMBLE = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
BUILTIN_TOOLS = ["brave_search", "wolfram_alpha"]

CHAT = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "  And of Japan?\n"},  # surrounding whitespace is trimmed
    {"role": "assistant", "content": "Tokyo, 13960000 people."},
]
TOOL_RESULT = {"temperature_c": 18, "sky": "clear"}
TOOL_CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "brave_search", "arguments": {"query": "weather in Paris"}}}]},
    {"role": "ipython", "content": TOOL_RESULT},
    {"role": "assistant", "content": "It is 18 degrees and clear in Paris."},
]
TOOL_MESSAGES = [
    Message("system", "Environment: ipython\nTools: brave_search, wolfram_alpha\n\n" + DATE_PREAMBLE
            + "You are a helpful assistant.", masked=True),
    Message("user", "What is the weather in Paris?", masked=True),
    # A builtin tool call: <|python_tag|> body, and <|eom_id|> since the turn waits for the result.
    Message("assistant", 'brave_search.call(query="weather in Paris")', ipython=True, eot=False),
    Message("ipython", json.dumps(TOOL_RESULT, ensure_ascii=False), masked=True),
    Message("assistant", "It is 18 degrees and clear in Paris."),
]


def to_messages(chat, system_prefix=""):
    out = []
    for m in chat:
        content = system_prefix + m["content"] if m["role"] == "system" else m["content"]
        out.append(Message(m["role"], content, masked=m["role"] != "assistant"))
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_llama3_tokenizer_files(tmp_path_factory.mktemp("llama3_tok"))


@pytest.fixture(scope="module")
def tok(files):
    return llama3_tokenizer(str(files[0]))


@pytest.fixture(scope="module")
def hf3(files):
    return load_hf_tokenizer(files[1], LLAMA3_TEMPLATE)


@pytest.fixture(scope="module")
def hf31(files):
    return load_hf_tokenizer(files[1], LLAMA31_TEMPLATE)


def hf_ids(hf, chat, **kwargs):
    return list(hf.apply_chat_template(chat, tokenize=True, return_dict=False, **kwargs))


def test_special_token_ids(files, tok):
    base = tok.base_vocab_size
    assert base == 256 + 300
    assert tok.special_tokens == llama3_special_token_names(base)
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.step_id) == (base, base + 1, base + 4, base + 5)
    assert (tok.start_header_id, tok.end_header_id, tok.eom_id, tok.eot_id, tok.python_tag, tok.image_id) == \
        (base + 6, base + 7, base + 8, base + 9, base + 10, base + 256)
    assert tok.stop_tokens == [tok.eos_id, tok.eot_id, tok.eom_id]
    assert tok.vocab_size == base + 257
    # Meta's file has 128000 ranks: the published ids.
    assert LLAMA3_SPECIAL_TOKENS == llama3_special_tokens(128000) == llama3_special_token_names(128000)
    assert LLAMA3_SPECIAL_TOKENS["<|eot_id|>"] == 128009 and LLAMA3_SPECIAL_TOKENS["<|image|>"] == 128256


def test_special_tokens_from_tokenizer_json(files, tok):
    from_json = llama3_tokenizer(str(files[0]), special_tokens_path=str(files[1]))
    assert from_json.special_tokens == tok.special_tokens


@pytest.mark.parametrize("chat", [CHAT, CHAT[1:]], ids=["system", "no_system"])
def test_llama3_chat_matches_hf(tok, hf3, chat):
    tokens, mask = tok.tokenize_messages(to_messages(chat))
    assert tokens == hf_ids(hf3, chat) + [tok.eos_id]
    assert len(mask) == len(tokens)


def test_llama31_system_prompt_matches_hf(tok, hf31):
    # Llama 3.1's template writes its date lines into the system message: the data carries them.
    tokens, _ = tok.tokenize_messages(to_messages(CHAT, system_prefix=DATE_PREAMBLE))
    assert tokens == hf_ids(hf31, CHAT) + [tok.eos_id]


def test_llama31_builtin_tool_call_matches_hf(tok, hf31):
    expected = hf_ids(hf31, TOOL_CHAT, builtin_tools=BUILTIN_TOOLS)
    tokens, mask = tok.tokenize_messages(TOOL_MESSAGES)
    assert tokens == expected + [tok.eos_id]
    assert tokens.count(tok.python_tag) == 1 and tokens.count(tok.eom_id) == 1
    # The tool call (python tag to eom) is trained; the tool's answer is not.
    call = tokens.index(tok.python_tag)
    assert not any(mask[call: tokens.index(tok.eom_id) + 1])
    result = tokens.index(tok.encode("ipython", add_bos=False, add_eos=False)[0], call)
    assert all(mask[result: result + 5])


def test_llama31_json_tool_call_matches_hf(tok, hf31):
    chat = TOOL_CHAT[1:3] + [{"role": "ipython", "content": TOOL_RESULT}]
    chat[1] = {"role": "assistant", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    messages = [
        Message("system", DATE_PREAMBLE, masked=True),
        Message("user", chat[0]["content"], masked=True),
        Message("assistant", '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
        Message("tool", json.dumps(TOOL_RESULT), masked=True),  # "tool" is written as ipython
    ]
    # Without a system prompt Llama 3.1 still ends the date block with "\n\n" before <|eot_id|>;
    # a message is stripped, so compare from the user message on.
    ours = tok.tokenize_messages(messages)[0]
    theirs = hf_ids(hf31, chat)
    user_start = theirs.index(tok.eot_id) + 1
    assert ours[ours.index(tok.eot_id) + 1:] == theirs[user_start:] + [tok.eos_id]


@pytest.mark.parametrize("template", ["llama3", "llama3.1"])
def test_generation_prompt_matches_hf(tok, hf3, hf31, template):
    hf, chat, prefix = (hf3, CHAT[:-1], "") if template == "llama3" else (hf31, CHAT[:2], DATE_PREAMBLE)
    # A generation prompt ends with an empty assistant message: its header opens the answer.
    messages = to_messages(chat, system_prefix=prefix) + [Message("assistant", "")]
    ours = tok({"messages": messages}, inference=True)["tokens"]
    assert ours == hf_ids(hf, chat, add_generation_prompt=True)
    assert tok.decode(ours, skip_special_tokens=False).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize("train_on_input", [False, True])
def test_masks_follow_train_on_input(tok, hf3, train_on_input):
    sample = {"messages": [{"role": m["role"], "content": m["content"]} for m in CHAT]}
    messages = OpenAIToMessages(train_on_input=train_on_input)(sample)["messages"]
    tokens, mask = tok.tokenize_messages(messages)
    # Expected mask from the reference: each message rendered and tokenized alone by transformers.
    expected = [True]
    for m in CHAT:
        piece = f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>"
        trained = m["role"] == "assistant" or (m["role"] == "user" and train_on_input)
        expected += [not trained] * len(hf3.encode(piece, add_special_tokens=False))
    assert mask == expected + [True]
    assert len(tokens) == len(mask)


def test_decode(tok, hf3):
    text = "Héllo wörld 😀 it's 12345 dollars,\n\n  tabs\tand 'quotes' DON'T"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("hi")[0] == tok.bos_id and tok.encode("hi")[-1] == tok.eos_id
    tokens, _ = tok.tokenize_messages(to_messages(CHAT))
    rendered = hf3.apply_chat_template(CHAT, tokenize=False)
    assert tok.decode(tokens, skip_special_tokens=False) == rendered  # stops at <|end_of_text|>
    assert tok.decode(tokens, truncate_at_eos=False, skip_special_tokens=False) == rendered + "<|end_of_text|>"
    assert tok.decode(tokens) == "".join(m["content"].strip() for m in CHAT)
    # Special-token strings inside text stay text: data cannot inject control tokens.
    ids = tok.encode("<|eot_id|>", add_bos=False, add_eos=False)
    assert tok.eot_id not in ids and tok.decode(ids) == "<|eot_id|>"


def test_truncation(files, tok):
    full, _ = tok.tokenize_messages(to_messages(CHAT))
    short = llama3_tokenizer(str(files[0]), max_seq_len=20)
    tokens, mask = short.tokenize_messages(to_messages(CHAT))
    assert tokens == full[:19] + [tok.eos_id] and len(mask) == 20 and mask[-1] is True
    prompt, _ = short.tokenize_messages(to_messages(CHAT), add_end_tokens=False)
    assert prompt == full[:20]
    left = llama3_tokenizer(str(files[0]), max_seq_len=20, truncation_type="left")
    assert left.tokenize_messages(to_messages(CHAT))[0] == full[-20:]


def test_call_and_tokenize_message(tok):
    sample = {"messages": to_messages(CHAT), "id": 3}
    out = tok(sample)
    assert out["id"] == 3 and "messages" not in out and "messages" in sample
    assert (out["tokens"], out["mask"]) == tok.tokenize_messages(to_messages(CHAT))
    msg = Message("user", "Hi there")
    body = tok.encode("Hi there", add_bos=False, add_eos=False)
    header = tok.tokenize_message(msg, add_end_tokens=False)[: -len(body)]
    assert tok.decode(header, skip_special_tokens=False) == "<|start_header_id|>user<|end_header_id|>\n\n"
    assert tok.tokenize_message(msg, add_start_tokens=False) == body + [tok.eot_id]
    assert tok.tokenize_message(Message("assistant", "x", eot=False), add_start_tokens=False)[-1] == tok.eom_id


def test_prompt_template(files, tok):
    templated = llama3_tokenizer(str(files[0]), prompt_template={"user": ["Question: ", ""]})
    tokens, _ = templated.tokenize_messages(to_messages(CHAT[1:3]))
    assert templated.decode(tokens) == "Question: What is the capital of France?The capital of France is Paris."


def test_image_content(tok):
    msg = Message("user", [{"type": "image", "content": object()}, {"type": "text", "content": "What is this?"}])
    ids = tok.tokenize_message(msg, add_start_tokens=False)
    assert ids == [tok.image_id] + tok.encode("What is this?", add_bos=False, add_eos=False) + [tok.eot_id]


def test_invalid_special_tokens(files, tok):
    partial = {k: v for k, v in tok.special_tokens.items() if k != "<|eot_id|>"}
    with pytest.raises(ValueError, match="eot_id"):
        Llama3Tokenizer(str(files[0]), special_tokens=partial)
    with pytest.raises(ValueError, match="inside them"):
        Llama3Tokenizer(str(files[0]), special_tokens=dict(tok.special_tokens, **{"<|eot_id|>": 5}))
    # Llama 3.0's files have no tool tokens: plain chat works, a tool call says what is missing.
    no_tools = {k: v for k, v in tok.special_tokens.items() if k not in ("<|eom_id|>", "<|python_tag|>")}
    old = Llama3Tokenizer(str(files[0]), special_tokens=no_tools)
    assert old.tokenize_messages(to_messages(CHAT)) == tok.tokenize_messages(to_messages(CHAT))
    with pytest.raises(ValueError, match="python_tag"):
        old.tokenize_messages(TOOL_MESSAGES)
    with pytest.raises(FileNotFoundError, match="missing.model"):
        llama3_tokenizer(str(files[0].parent / "missing.model"))



def test_random_chats_match_hf(tok, hf3):
    for chat in random_chats(25, seed=0):
        assert tok.tokenize_messages(to_messages(chat))[0] == hf_ids(hf3, chat) + [tok.eos_id], chat
