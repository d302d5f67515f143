from typing import List

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate, _with_tags

_START, _END = "<start_of_turn>", "<end_of_turn>\n"
_USER, _MODEL = f"{_START}user\n", f"{_START}model\n"


def _trimmed(message: Message) -> Message:
    """A copy of ``message`` without whitespace around its text (Gemma's template trims contents)."""
    content = [dict(part) for part in message.content]
    texts = [part for part in content if part.get("type") == "text"]
    if texts:
        texts[0]["content"] = texts[0]["content"].lstrip()
        texts[-1]["content"] = texts[-1]["content"].rstrip()
    return Message(role=message.role, content=content, masked=message.masked, ipython=message.ipython,
                   eot=message.eot)


class GemmaChatTemplate(PromptTemplate):
    """The chat format of Gemma's instruction-tuned models (Gemma, Gemma 2, Gemma 3)::

        <start_of_turn>user
        Be brief.

        What is the capital of France?<end_of_turn>
        <start_of_turn>model
        Paris.<end_of_turn>

    Each turn is ``<start_of_turn>{user|model}\\n{content}<end_of_turn>\\n`` with its content
    stripped of surrounding whitespace. Gemma has no system role: a system message opens the
    first user turn and is separated from it by a blank line (Gemma 3's Hugging Face chat
    template; Gemma 1 and 2's refuse system messages). The ``<start_of_turn>model\\n`` that opens
    a reply is appended to the user message before it, so it is masked like the prompt and a
    generation prompt ends with it. BOS (and a final EOS) are added by
    :class:`~torchtune.models.gemma.GemmaTokenizer`.
    """

    def __init__(self) -> None:
        super().__init__({"user": (_USER, _END + _MODEL), "assistant": ("", _END)})

    def __call__(self, messages: List[Message], inference: bool = False) -> List[Message]:
        """Format a conversation; the input list is not modified.

        Args:
            messages (List[Message]): the conversation.
            inference (bool): unused (a user message already ends with the reply's opening). Default False.

        Returns:
            List[Message]: the formatted messages.

        Raises:
            ValueError: if a system message is not the first message or is not followed by a user
                message, or a message has another role than system, user or assistant.
        """
        out: List[Message] = []
        for i, message in enumerate(messages):
            if message.role == "system":
                if i != 0 or len(messages) < 2 or messages[1].role != "user":
                    raise ValueError(
                        "GemmaChatTemplate: a system message must be the first message and be followed by a "
                        f"user message (found one at index {i})"
                    )
                # Kept as its own message so that it keeps its own (masked) loss mask; not trimmed,
                # as in Gemma's template.
                out.append(_with_tags(message, _USER, "\n\n"))
            elif message.role == "user" and i == 1 and messages[0].role == "system":
                out.append(_with_tags(_trimmed(message), "", _END + _MODEL))
            elif message.role in ("user", "assistant"):
                out.append(self._wrap(_trimmed(message)))
            else:
                raise ValueError(f"GemmaChatTemplate: Gemma's format has no {message.role!r} role "
                                 f"(message {i}); expected system, user or assistant")
        return out
