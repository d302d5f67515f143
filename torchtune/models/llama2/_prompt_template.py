from typing import List

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate, _with_tags

_B_SYS, _E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"


class Llama2ChatTemplate(PromptTemplate):
    """The chat format of Llama2-chat (Touvron et al., 2023)::

        [INST] <<SYS>>
        You are a helpful assistant.
        <</SYS>>

        Hi! [/INST] Hello, how can I help?

    User messages are wrapped in ``[INST] ... [/INST]``; a system message goes inside the
    ``[INST]`` block of the user message after it, in ``<<SYS>>`` tags; an answer is followed by
    a space, as in Meta's reference (``f"{B_INST} {prompt} {E_INST} {answer} "``) and
    Llama-2-chat's Hugging Face template. BOS/EOS around each turn are added by the tokenizer.
    """

    def __init__(self) -> None:
        super().__init__({"system": (_B_SYS, _E_SYS), "user": ("[INST] ", " [/INST] "), "assistant": ("", " ")})

    def __call__(self, messages: List[Message], inference: bool = False) -> List[Message]:
        """Format a conversation; the input list is not modified.

        A system message followed by a user message opens the ``[INST]`` block itself, so
        that it keeps its own (always masked) loss mask while the text stays Meta's format.

        Args:
            messages (List[Message]): the conversation.
            inference (bool): unused (the assistant turn has no prefix to open).

        Returns:
            List[Message]: the formatted messages.
        """
        out: List[Message] = []
        inst_open = False
        for i, message in enumerate(messages):
            next_is_user = i + 1 < len(messages) and messages[i + 1].role == "user"
            if message.role == "system" and next_is_user:
                out.append(_with_tags(message, "[INST] " + _B_SYS, _E_SYS))
                inst_open = True
            elif message.role == "user" and inst_open:
                out.append(_with_tags(message, "", " [/INST] "))
                inst_open = False
            else:
                out.append(self._wrap(message))
        return out
