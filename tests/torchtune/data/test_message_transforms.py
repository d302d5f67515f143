import pytest

from torchtune.data import (
    AlpacaToMessages,
    ChosenRejectedToMessages,
    InputOutputToMessages,
    Message,
    OpenAIToMessages,
    ShareGPTToMessages,
)


def test_input_output():
    out = InputOutputToMessages()({"input": "2+2?", "output": "4"})["messages"]
    assert out == [Message("user", "2+2?", masked=True), Message("assistant", "4")]
    out = InputOutputToMessages(train_on_input=True, column_map={"input": "q"}, new_system_prompt="Be terse.")(
        {"q": "2+2?", "output": "4"})["messages"]
    assert out == [Message("system", "Be terse.", masked=True), Message("user", "2+2?"), Message("assistant", "4")]


def test_missing_column_names_expected_and_available():
    with pytest.raises(KeyError, match=r"'question'.*expected column 'input'.*available columns: \['answer', 'q'\]"):
        InputOutputToMessages(column_map={"input": "question"})({"q": "x", "answer": "y"})
    with pytest.raises(KeyError, match=r"Column 'output' not found.*\['input'\]"):
        InputOutputToMessages()({"input": "x"})


def test_unknown_column_map_key():
    with pytest.raises(ValueError, match=r"unknown keys \['prompt'\]"):
        InputOutputToMessages(column_map={"prompt": "q"})


def test_alpaca():
    sample = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
    user, assistant = AlpacaToMessages()(sample)["messages"]
    assert user.text_content == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n"
    )
    assert user.masked is False and assistant == Message("assistant", "5")
    user, _ = AlpacaToMessages(train_on_input=False)({**sample, "input": ""})["messages"]
    assert user.masked is True
    assert user.text_content == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nAdd the numbers.\n\n### Response:\n"
    )


def test_sharegpt():
    sample = {"conv": [{"from": "system", "value": "sys"}, {"from": "human", "value": "hi"},
                       {"from": "gpt", "value": "hello"}]}
    out = ShareGPTToMessages(column_map={"conversations": "conv"})(sample)["messages"]
    assert out == [Message("system", "sys", masked=True), Message("user", "hi", masked=True),
                   Message("assistant", "hello")]
    out = ShareGPTToMessages(train_on_input=True, new_system_prompt="new", column_map={"conversations": "conv"})(
        sample)["messages"]
    assert out == [Message("system", "new", masked=True), Message("user", "hi"), Message("assistant", "hello")]
    with pytest.raises(ValueError, match="unknown 'from' value 'robot'"):
        ShareGPTToMessages()({"conversations": [{"from": "robot", "value": "x"}]})


def test_openai():
    sample = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                           {"role": "assistant", "content": "c"}]}
    assert OpenAIToMessages()(sample)["messages"] == [Message("user", "ab", masked=True), Message("assistant", "c")]
    with pytest.raises(ValueError, match="image_url"):
        OpenAIToMessages()({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]})


def test_chosen_rejected():
    sample = {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
              "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}]}
    out = ChosenRejectedToMessages()(sample)
    assert out["chosen"] == [Message("user", "q", masked=True), Message("assistant", "good")]
    assert out["rejected"][1] == Message("assistant", "bad")
