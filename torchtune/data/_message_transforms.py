"""Message transforms: turn one dataset row into ``{"messages": List[Message]}``.

Masking convention (what the loss trains on): system messages are always masked, user and
tool messages are masked unless ``train_on_input=True``, assistant messages are never masked.
"""

from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from torchtune._errors import DataError, MissingColumnError
from torchtune.data._instruct_templates import AlpacaInstructTemplate
from torchtune.data._messages import Message
from torchtune.data._utils import get_column, resolve_column_map
from torchtune.modules.transforms import Transform


class _ToMessages(Transform):
    """Shared arguments of the transforms below; ``_COLUMNS`` lists the columns a transform reads.

    Args:
        train_on_input (bool): also train on user and tool messages.
        column_map (Optional[Dict[str, str]]): maps the expected columns to your column names.
        new_system_prompt (Optional[str]): a system message with this text comes first and
            replaces any system message of the data.

    Raises:
        ValueError: if ``column_map`` has a key that is not an expected column.
    """

    _COLUMNS: List[str] = []
    # Expected Python type of each column; columns in _OPTIONAL may be missing or null.
    _TYPES: Dict[str, type] = {}
    _OPTIONAL: Tuple[str, ...] = ()

    def __init__(
        self,
        train_on_input: bool = False,
        column_map: Optional[Dict[str, str]] = None,
        new_system_prompt: Optional[str] = None,
    ) -> None:
        self.train_on_input = train_on_input
        self.column_map = resolve_column_map(column_map, self._COLUMNS, type(self).__name__)
        self.new_system_prompt = new_system_prompt

    def check_row(self, sample: Mapping[str, Any]) -> Optional[DataError]:
        """What is wrong with a row's columns, or None if each is present and of the expected type.

        Args:
            sample (Mapping[str, Any]): one dataset row.

        Returns:
            Optional[DataError]: not raised; e.g. ``DataError("column 'instruction' is null
            (expected str)")``, or a ``MissingColumnError`` (also a ``KeyError``).
        """
        for name in self._COLUMNS:
            column = self.column_map[name]
            expected = self._TYPES.get(name, str).__name__
            value = sample.get(column)
            if value is None and name in self._OPTIONAL:
                continue
            if column not in sample:
                via = f" (expected column {name!r}, mapped via column_map)" if name != column else ""
                return MissingColumnError(f"column {column!r}{via} is missing; columns: {sorted(sample)}")
            if value is None:
                return DataError(f"column {column!r} is null (expected {expected})")
            if not isinstance(value, self._TYPES.get(name, str)):
                return DataError(f"column {column!r} is a {type(value).__name__} (expected {expected})")
        return None

    def _column(self, sample: Mapping[str, Any], name: str) -> Any:
        return get_column(sample, self.column_map[name], name)

    def _messages(self, turns: Iterable[Tuple[str, str]]) -> List[Message]:
        """(role, text) pairs as messages, with the masking convention and the system prompt."""
        messages = []
        if self.new_system_prompt is not None:
            messages.append(Message("system", self.new_system_prompt, masked=True))
        for role, text in turns:
            if role == "system" and self.new_system_prompt is not None:
                continue
            masked = role == "system" or (role != "assistant" and not self.train_on_input)
            messages.append(Message(role, text, masked=masked))
        return messages


class InputOutputToMessages(_ToMessages):
    """One user prompt and one assistant reply, from an ``input`` and an ``output`` column.

    Args:
        train_on_input (bool): also train on the prompt. Default False.
        column_map (Optional[Dict[str, str]]): maps ``input`` / ``output`` to your column names.
        new_system_prompt (Optional[str]): if given, a system message with this text comes first.

    Raises:
        ValueError: if ``column_map`` has keys other than ``input`` and ``output``.
    """

    _COLUMNS = ["input", "output"]

    def __call__(self, sample: Mapping[str, Any]) -> Mapping[str, Any]:
        turns = [("user", self._column(sample, "input")), ("assistant", self._column(sample, "output"))]
        return {"messages": self._messages(turns)}


class AlpacaToMessages(_ToMessages):
    """Alpaca rows (``instruction``, ``input``, ``output``) as a user prompt in the Alpaca format
    (see :class:`~torchtune.data.AlpacaInstructTemplate`) and the assistant's reply.

    Args:
        train_on_input (bool): also train on the prompt. Default True (as in the Alpaca recipe).
        column_map (Optional[Dict[str, str]]): maps ``instruction`` / ``input`` / ``output`` to
            your column names.

    Raises:
        ValueError: if ``column_map`` has other keys.
    """

    _COLUMNS = ["instruction", "input", "output"]
    _OPTIONAL = ("input",)

    def __init__(self, train_on_input: bool = True, column_map: Optional[Dict[str, str]] = None) -> None:
        super().__init__(train_on_input=train_on_input, column_map=column_map)

    def __call__(self, sample: Mapping[str, Any]) -> Mapping[str, Any]:
        prompt = AlpacaInstructTemplate.format(sample, self.column_map)
        return {"messages": self._messages([("user", prompt), ("assistant", self._column(sample, "output"))])}


_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                   "assistant": "assistant", "tool": "tool", "function": "tool", "ipython": "ipython"}


class ShareGPTToMessages(_ToMessages):
    """ShareGPT conversations: a ``conversations`` column holding
    ``[{"from": "system" | "human" | "gpt", "value": str}, ...]``.

    Args:
        train_on_input (bool): also train on user messages. Default False.
        column_map (Optional[Dict[str, str]]): maps ``conversations`` to your column name.
        new_system_prompt (Optional[str]): replaces any system message of the data.

    Raises:
        ValueError: if ``column_map`` has other keys.
    """

    _COLUMNS = ["conversations"]
    _TYPES = {"conversations": list}

    def __call__(self, sample: Mapping[str, Any]) -> Mapping[str, Any]:
        turns = []
        for turn in self._column(sample, "conversations"):
            speaker = turn.get("from")
            if speaker not in _SHAREGPT_ROLES:
                raise ValueError(f"ShareGPT turn has unknown 'from' value {speaker!r}; "
                                 f"expected one of {sorted(_SHAREGPT_ROLES)}")
            turns.append((_SHAREGPT_ROLES[speaker], turn["value"]))
        return {"messages": self._messages(turns)}


class OpenAIToMessages(_ToMessages):
    """OpenAI chat format: a ``messages`` column holding ``[{"role": ..., "content": ...}, ...]``,
    where ``content`` is a string or a list of ``{"type": "text", "text": ...}`` parts.

    Args:
        train_on_input (bool): also train on user messages. Default False.
        column_map (Optional[Dict[str, str]]): maps ``messages`` to your column name.
        new_system_prompt (Optional[str]): replaces any system message of the data.

    Raises:
        ValueError: if ``column_map`` has other keys, or content has non-text parts.
    """

    _COLUMNS = ["messages"]
    _TYPES = {"messages": list}

    def __call__(self, sample: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"messages": self._messages(_openai_turns(self._column(sample, "messages")))}


class ChosenRejectedToMessages(_ToMessages):
    """Preference pairs: ``chosen`` and ``rejected`` columns, each a full conversation in the
    OpenAI format (``[{"role": ..., "content": ...}, ...]``) ending with the assistant reply.

    Args:
        train_on_input (bool): also train on user messages. Default False.
        column_map (Optional[Dict[str, str]]): maps ``chosen`` / ``rejected`` to your column names.
        new_system_prompt (Optional[str]): replaces any system message of the data.

    Raises:
        ValueError: if ``column_map`` has other keys.
    """

    _COLUMNS = ["chosen", "rejected"]
    _TYPES = {"chosen": list, "rejected": list}

    def __call__(self, sample: Mapping[str, Any]) -> Mapping[str, Any]:
        return {key: self._messages(_openai_turns(self._column(sample, key))) for key in ("chosen", "rejected")}


def _openai_turns(conversation: Iterable[Mapping[str, Any]]) -> List[Tuple[str, str]]:
    turns = []
    for message in conversation:
        content = message["content"]
        if not isinstance(content, str):
            for part in content:
                if part.get("type") != "text":
                    raise ValueError(f"Only text content parts are supported, got a part of type {part.get('type')!r}")
            content = "".join(part["text"] for part in content)
        turns.append((message["role"], content))
    return turns
