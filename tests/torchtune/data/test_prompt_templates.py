import pytest

from torchtune.data import (
    AlpacaInstructTemplate,
    ChatMLTemplate,
    GrammarErrorCorrectionTemplate,
    Message,
    PromptTemplate,
    QuestionAnswerTemplate,
    SummarizeTemplate,
)
from torchtune.data._prompt_templates import _get_prompt_template
from torchtune.models.llama2 import Llama2ChatTemplate


def texts(messages):
    return [(m.role, m.text_content) for m in messages]


def test_prompt_template_wraps_roles():
    template = PromptTemplate({"user": ("<u>", "</u>"), "assistant": ["<a>", "</a>"]})
    messages = [Message("system", "s"), Message("user", "hi", masked=True), Message("assistant", "yo")]
    out = template(messages)
    assert texts(out) == [("system", "s"), ("user", "<u>hi</u>"), ("assistant", "<a>yo</a>")]
    assert out[1].masked and messages[1].text_content == "hi"  # input untouched


def test_unfinished_assistant_gets_no_suffix_and_inference_opens_a_turn():
    template = PromptTemplate({"user": ("<u>", "</u>"), "assistant": ("<a>", "</a>")})
    assert texts(template([Message("assistant", "part", eot=False)])) == [("assistant", "<a>part")]
    out = template([Message("user", "hi")], inference=True)
    assert texts(out) == [("user", "<u>hi</u>"), ("assistant", "<a>")] and out[-1].eot is False


def test_chatml():
    out = ChatMLTemplate()([Message("system", "s"), Message("user", "u"), Message("assistant", "a")])
    assert "".join(m.text_content for m in out) == (
        "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n"
    )


@pytest.mark.parametrize("cls, expected", [
    (GrammarErrorCorrectionTemplate, "Correct this to standard English: x\n---\nCorrected: "),
    (SummarizeTemplate, "Summarize this dialogue:\nx\n---\nSummary:\n"),
    (QuestionAnswerTemplate, "Question: x\n\nAnswer: "),
    (AlpacaInstructTemplate, "Below is an instruction that describes a task. Write a response that "
                             "appropriately completes the request.\n\n### Instruction:\nx\n\n### Response:\n"),
])
def test_task_templates(cls, expected):
    assert cls()([Message("user", "x")])[0].text_content == expected


def test_llama2_chat_template():
    out = Llama2ChatTemplate()([Message("system", "sys", masked=True), Message("user", "u1"),
                                Message("assistant", "a1"), Message("user", "u2")])
    assert texts(out) == [("system", "[INST] <<SYS>>\nsys\n<</SYS>>\n\n"), ("user", "u1 [/INST] "),
                          ("assistant", "a1 "), ("user", "[INST] u2 [/INST] ")]
    assert out[0].masked


def test_get_prompt_template():
    assert _get_prompt_template(None) is None
    assert isinstance(_get_prompt_template("torchtune.data.ChatMLTemplate"), ChatMLTemplate)
    assert _get_prompt_template({"user": ["a", "b"]}).template == {"user": ("a", "b")}
    t = QuestionAnswerTemplate()
    assert _get_prompt_template(t) is t
    with pytest.raises(ImportError, match="torchtune.data.NoSuchTemplate"):
        _get_prompt_template("torchtune.data.NoSuchTemplate")
    with pytest.raises(ValueError, match=r"\[prefix, suffix\]"):
        PromptTemplate({"user": "just one string"})


def test_template_from_omegaconf_yaml():
    from omegaconf import OmegaConf

    # YAML processes escapes such as \n only in double-quoted strings.
    cfg = OmegaConf.create('template:\n  user: ["Q: ", "\\nA: "]\n  assistant: ["", ""]\n')
    template = PromptTemplate(cfg.template)
    assert template.template == {"user": ("Q: ", "\nA: "), "assistant": ("", "")}
    assert _get_prompt_template(cfg.template).template == template.template


def test_task_templates_are_prompt_template_partials_loadable_by_path():
    import functools

    from torchtune.data import PromptTemplate
    from torchtune.data._prompt_templates import _get_prompt_template

    assert isinstance(SummarizeTemplate, functools.partial) and SummarizeTemplate.func is PromptTemplate
    template = _get_prompt_template("torchtune.data.QuestionAnswerTemplate")
    assert isinstance(template, PromptTemplate) and template.template == {"user": ("Question: ", "\n\nAnswer: ")}
    custom = QuestionAnswerTemplate(template={"user": ("Q: ", " A: ")})
    assert custom([Message("user", "x")])[0].text_content == "Q: x A: "
