from typing import List

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate, _with_tags

_INST, _END_INST = "[INST] ", " [/INST] "


class MistralChatTemplate(PromptTemplate):
    """The chat format of Mistral-7B-Instruct (Jiang et al., 2023)::

        [INST] Be brief.

        What is the capital of France? [/INST] Paris.</s> [INST] And of Japan? [/INST] Tokyo.</s>

    User messages are wrapped in ``[INST] ... [/INST]``; assistant replies follow unchanged. A
    system message, which Mistral has no role for, opens the ``[INST]`` block of the first user
    message and is separated from it by a blank line, as in Mistral's Hugging Face chat template.
    BOS and EOS are added by :class:`~torchtune.models.mistral.MistralTokenizer`.
    """

    def __init__(self) -> None:
        super().__init__({"user": (_INST, _END_INST), "assistant": ("", ""), "ipython": ("", "")})

    def __call__(self, messages: List[Message], inference: bool = False) -> List[Message]:
        """Format a conversation; the input list is not modified.

        Args:
            messages (List[Message]): the conversation.
            inference (bool): unused (the assistant turn has no prefix to open). Default False.

        Returns:
            List[Message]: the formatted messages.

        Raises:
            ValueError: if a system message is not the first message or is not followed by a
                user message.
        """
        out: List[Message] = []
        for i, message in enumerate(messages):
            if message.role == "system":
                if i != 0 or len(messages) < 2 or messages[1].role != "user":
                    raise ValueError(
                        "MistralChatTemplate: a system message must be the first message and be followed by a "
                        f"user message (found one at index {i})"
                    )
                # Kept as its own message so that it keeps its own (masked) loss mask.
                out.append(_with_tags(message, _INST, "\n\n"))
            elif message.role == "user" and i == 1 and messages[0].role == "system":
                out.append(_with_tags(message, "", _END_INST))
            else:
                out.append(self._wrap(message))
        return out
