"""Prompt templates: wrap each message's text in role-specific tags before tokenization."""

from collections.abc import Mapping as MappingABC, Sequence as SequenceABC
from functools import partial
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, Union

from torchtune.data._messages import _ROLES, Message, Role
from torchtune.data._utils import import_from_path

_TemplateType = Union[str, Mapping[str, Sequence[str]], "PromptTemplateInterface"]


class PromptTemplateInterface(Protocol):
    """What a tokenizer needs from a prompt template.

    ``template`` maps a role to its ``(prefix, suffix)``; calling the template returns new
    messages whose text carries those tags. Templates only add plain text: special tokens
    (BOS/EOS, header ids) are the model tokenizer's job.
    """

    template: Dict[Role, Tuple[str, str]]

    def __call__(self, messages: List[Message], inference: bool = False) -> List[Message]:
        ...


class PromptTemplate:
    """A template given as a dict: each role's text is wrapped in its ``(prefix, suffix)``.

    Roles absent from the dict are left as they are. An assistant message with ``eot=False``
    (a reply still being generated) gets its prefix but not its suffix. With
    ``inference=True`` and a conversation that does not end with an assistant message, an
    empty assistant message carrying the assistant prefix is appended, so that the prompt
    ends where the model should start writing.

    Usable from YAML::

        tokenizer:
          prompt_template:
            _component_: torchtune.data.PromptTemplate
            template:
              user: ["Question: ", "\\n\\nAnswer: "]
              assistant: ["", ""]

    Args:
        template (Mapping[str, Sequence[str]]): role -> ``(prefix, suffix)``.

    Raises:
        ValueError: on an unknown role or a value that is not a pair of strings.
    """

    def __init__(self, template: Mapping[str, Sequence[str]]) -> None:
        if not isinstance(template, MappingABC):
            raise ValueError(f"A prompt template must be a dict of role -> [prefix, suffix], got {template!r}")
        parsed: Dict[Role, Tuple[str, str]] = {}
        for role, tags in template.items():
            if role not in _ROLES:
                raise ValueError(f"Prompt template has unknown role {role!r}; expected one of {sorted(_ROLES)}")
            if isinstance(tags, str) or not isinstance(tags, SequenceABC) or len(tags) != 2 \
                    or not all(isinstance(t, str) for t in tags):
                raise ValueError(f"Prompt template entry for {role!r} must be [prefix, suffix] strings, got {tags!r}")
            parsed[role] = (tags[0], tags[1])
        self.template = parsed

    def __call__(self, messages: List[Message], inference: bool = False) -> List[Message]:
        """Return the messages with their text wrapped; the input list is not modified.

        Args:
            messages (List[Message]): the conversation.
            inference (bool): open an assistant turn at the end (see the class docstring).

        Returns:
            List[Message]: the formatted conversation.
        """
        out = [self._wrap(m) for m in messages]
        prefix = self.template.get("assistant", ("", ""))[0]
        if inference and prefix and (not messages or messages[-1].role != "assistant"):
            out.append(Message(role="assistant", content=prefix, masked=True, eot=False))
        return out

    def _wrap(self, message: Message) -> Message:
        if message.role not in self.template:
            return message
        prefix, suffix = self.template[message.role]
        if message.role == "assistant" and not message.eot:
            suffix = ""
        return _with_tags(message, prefix, suffix)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.template!r})"


def _with_tags(message: Message, prefix: str, suffix: str) -> Message:
    """A copy of ``message`` with ``prefix`` and ``suffix`` text around its content."""
    content = ([{"type": "text", "content": prefix}] if prefix else []) + message.content
    if suffix:
        content.append({"type": "text", "content": suffix})
    return Message(role=message.role, content=content, masked=message.masked, ipython=message.ipython, eot=message.eot)


class ChatMLTemplate(PromptTemplate):
    """OpenAI's ChatML format: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message."""

    def __init__(self) -> None:
        super().__init__({
            "system": ("<|im_start|>system\n", "<|im_end|>\n"),
            "user": ("<|im_start|>user\n", "<|im_end|>\n"),
            "assistant": ("<|im_start|>assistant\n", "<|im_end|>\n"),
            "ipython": ("<|im_start|>tool\n", "<|im_end|>\n"),
            "tool": ("<|im_start|>tool\n", "<|im_end|>\n"),
        })


# Task templates, as in torchtune: ``PromptTemplate`` with a preset ``template`` (a keyword
# argument the caller may still override), so ``GrammarErrorCorrectionTemplate()`` builds one.
GrammarErrorCorrectionTemplate = partial(
    PromptTemplate, template={"user": ("Correct this to standard English: ", "\n---\nCorrected: ")}
)
GrammarErrorCorrectionTemplate.__doc__ = "Asks the model to rewrite the user's text in standard English."

SummarizeTemplate = partial(PromptTemplate, template={"user": ("Summarize this dialogue:\n", "\n---\nSummary:\n")})
SummarizeTemplate.__doc__ = "Asks the model to summarize the dialogue given by the user."

QuestionAnswerTemplate = partial(PromptTemplate, template={"user": ("Question: ", "\n\nAnswer: ")})
QuestionAnswerTemplate.__doc__ = "Formats the user's text as a question followed by an answer cue."


def _get_prompt_template(prompt_template: Optional[_TemplateType]) -> Optional[PromptTemplateInterface]:
    """Resolve a tokenizer's ``prompt_template`` argument.

    Args:
        prompt_template: None; a dotted path to a template class (instantiated with no
            arguments) or instance; a dict role -> ``[prefix, suffix]``; or a template instance.

    Returns:
        Optional[PromptTemplateInterface]: the template, or None.

    Raises:
        ValueError: if the argument is none of the above.
    """
    if prompt_template is None:
        return None
    if isinstance(prompt_template, str):
        obj: Any = import_from_path(prompt_template)
        # A class or a partial of one (the task templates) is built with its defaults.
        template = obj() if isinstance(obj, (type, partial)) else obj
    elif isinstance(prompt_template, MappingABC):
        template = PromptTemplate(prompt_template)
    else:
        template = prompt_template
    if not callable(template) or not hasattr(template, "template"):
        raise ValueError(
            f"prompt_template must be a dotted path to a template, a dict role -> [prefix, suffix] or a "
            f"PromptTemplateInterface instance, got {prompt_template!r}"
        )
    return template
