"""The ``Message`` type every dataset produces and every model tokenizer consumes."""

from typing import Any, Dict, List, Literal, Mapping, Union, get_args

Role = Literal["system", "user", "assistant", "ipython", "tool"]
_ROLES = frozenset(get_args(Role))


class Message:
    """One turn of a conversation.

    Args:
        role (Role): ``"system"``, ``"user"``, ``"assistant"``, ``"ipython"`` (tool output for
            Llama3-style tool calls) or ``"tool"``.
        content (Union[str, List[Dict[str, Any]]]): the text, or a list of parts
            ``{"type": "text" | "image", "content": ...}``.
        masked (bool): True if the message's tokens are excluded from the loss. Default False.
        ipython (bool): True if the message is a tool call. Default False.
        eot (bool): True if the message ends its turn (the tokenizer then closes it with the
            end token). False for an assistant reply still being generated. Default True.

    Raises:
        ValueError: on an unknown role, or a content part with an unknown type.
        TypeError: if ``content`` is neither a string nor a list of parts.
    """

    def __init__(
        self,
        role: Role,
        content: Union[str, List[Dict[str, Any]]],
        masked: bool = False,
        ipython: bool = False,
        eot: bool = True,
    ) -> None:
        if role not in _ROLES:
            raise ValueError(f"Unknown message role {role!r}; expected one of {sorted(_ROLES)}")
        self.role = role
        self.content = _normalize_content(content)
        self.masked = masked
        self.ipython = ipython
        self.eot = eot

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Message":
        """Build a message from a dict with keys ``role``, ``content`` and optionally
        ``masked``, ``ipython``, ``eot``."""
        return cls(
            role=d["role"],
            content=d["content"],
            masked=d.get("masked", False),
            ipython=d.get("ipython", False),
            eot=d.get("eot", True),
        )

    @property
    def text_content(self) -> str:
        """All text parts joined (media parts are skipped)."""
        return "".join(part["content"] for part in self.content if part["type"] == "text")

    @property
    def contains_media(self) -> bool:
        """True if any content part is not text."""
        return any(part["type"] != "text" for part in self.content)

    def get_media(self) -> List[Any]:
        """The non-text content parts' payloads, in order."""
        return [part["content"] for part in self.content if part["type"] != "text"]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.role, self.content, self.masked, self.ipython, self.eot) == (
            other.role, other.content, other.masked, other.ipython, other.eot
        )

    def __repr__(self) -> str:
        return (
            f"Message(role={self.role!r}, content={self.text_content!r}, masked={self.masked}, "
            f"ipython={self.ipython}, eot={self.eot})"
        )


def _normalize_content(content: Union[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if not isinstance(content, list):
        raise TypeError(
            f"Message content must be a string or a list of parts, got {type(content).__name__}"
        )
    for part in content:
        if not isinstance(part, Mapping) or part.get("type") not in ("text", "image") or "content" not in part:
            raise ValueError(
                f"Message content parts must be dicts {{'type': 'text' | 'image', 'content': ...}}, got {part!r}"
            )
    return [dict(part) for part in content]


def validate_messages(messages: List[Message]) -> None:
    """Check that a conversation is well formed.

    Args:
        messages (List[Message]): the conversation.

    Raises:
        ValueError: if it is empty, a system message is not first, or two user messages follow
            each other.
    """
    if not messages:
        raise ValueError("A conversation must contain at least one message")
    for i, message in enumerate(messages):
        if message.role == "system" and i > 0:
            raise ValueError(f"System message at index {i}: a system message may only come first")
        if i > 0 and message.role == "user" and messages[i - 1].role == "user":
            raise ValueError(f"Two consecutive user messages at indices {i - 1} and {i}")
