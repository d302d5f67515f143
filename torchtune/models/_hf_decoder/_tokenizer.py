"""The tokenizer of any Hugging Face checkpoint folder: ``tokenizer.json`` plus its chat template.

Conversations are rendered with the checkpoint's own Jinja chat template (as transformers'
``apply_chat_template`` does) and tokenized in one piece, so the ids are the ones the model saw
in its chat training; each token's mask comes from the message its text belongs to.
"""

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from torchtune.data import Message
from torchtune.data._utils import truncate
from torchtune.modules.transforms import Transform
from torchtune.modules.transforms.tokenizers import HuggingFaceBaseTokenizer, ModelTokenizer
from torchtune.modules.transforms.tokenizers._model_tokenizer import _MessagesTransform


def _read_chat_template(folder: Path, config: Mapping[str, Any]) -> Optional[str]:
    # transformers 5 writes the template to its own file; older folders keep it in the config.
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return template


def _compile(template: str, source: str):
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ValueError(f"{source}: the chat template refused the conversation: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


class HFModelTokenizer(_MessagesTransform, ModelTokenizer, Transform):
    """Model tokenizer of a Hugging Face checkpoint folder, for any architecture.

    Args:
        path (str): the folder with ``tokenizer.json`` and ``tokenizer_config.json`` (and
            optionally ``chat_template.jinja`` and ``generation_config.json``).
        max_seq_len (Optional[int]): truncate tokenized samples to this length. Default None.
        truncation_type (str): ``"right"`` or ``"left"``. Default ``"right"``.

    Without a chat template, messages are concatenated (BOS first, EOS last), as for plain text.

    Raises:
        FileNotFoundError: if ``tokenizer.json`` is missing.
        ValueError: as :class:`HuggingFaceBaseTokenizer`.
    """

    def __init__(self, path: str, max_seq_len: Optional[int] = None, truncation_type: str = "right") -> None:
        folder = Path(path)
        self._source = str(folder)
        config_file, generation_file = folder / "tokenizer_config.json", folder / "generation_config.json"
        self.base = HuggingFaceBaseTokenizer(
            str(folder / "tokenizer.json"),
            tokenizer_config_json_path=str(config_file) if config_file.is_file() else None,
            generation_config_path=str(generation_file) if generation_file.is_file() else None,
        )
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        self._tokens = {key: self._token_text(config.get(key)) for key in ("bos_token", "eos_token", "pad_token")}
        template = _read_chat_template(folder, config)
        self._template = None if template is None else _compile(template, self._source)
        self.max_seq_len = max_seq_len
        self.truncation_type = truncation_type

    @staticmethod
    def _token_text(token: Any) -> Optional[str]:
        return token.get("content") if isinstance(token, dict) else token

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size

    @property
    def bos_id(self) -> Optional[int]:
        return self.base.bos_id

    @property
    def eos_id(self) -> int:
        return self.base.eos_id

    @property
    def pad_id(self) -> int:
        pad = self._tokens["pad_token"]
        pad_id = None if pad is None else self.base.tokenizer.token_to_id(pad)
        return self.eos_id if pad_id is None else pad_id

    @property
    def special_tokens(self) -> Dict[str, int]:
        return {t.content: i for i, t in self.base.tokenizer.get_added_tokens_decoder().items() if t.special}

    @property
    def has_chat_template(self) -> bool:
        return self._template is not None

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = True) -> List[int]:
        """Encode text; see :meth:`HuggingFaceBaseTokenizer.encode`."""
        return self.base.encode(text, add_bos=add_bos, add_eos=add_eos)

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Decode ids to text, by default without special tokens."""
        return self.base.decode(token_ids, skip_special_tokens=skip_special_tokens)

    def render(self, messages: List[Dict[str, Any]], add_generation_prompt: bool = False) -> str:
        """The chat template applied to OpenAI-style ``{"role", "content"}`` dicts.

        Raises:
            ValueError: if the checkpoint has no chat template, or the template refuses the conversation.
        """
        if self._template is None:
            raise ValueError(f"{self._source}: tokenizer_config.json has no chat_template")
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     bos_token=self._tokens["bos_token"] or "",
                                     eos_token=self._tokens["eos_token"] or "")

    def tokenize_messages(self, messages: List[Message], *, add_eos: bool = True) -> Tuple[List[int], List[bool]]:
        """Tokenize a conversation through the chat template.

        Args:
            messages (List[Message]): the conversation.
            add_eos (bool): a training sample. False for a generation prompt: the template's
                generation prompt is appended (``add_generation_prompt=True``) unless the
                conversation ends with an assistant message, which is left open. Default True.

        Returns:
            Tuple[List[int], List[bool]]: tokens and mask (True = not trained on).

        Raises:
            ValueError: if a message holds media, or the template renders an earlier turn
                differently once later turns follow (its masks would be ambiguous).
        """
        for message in messages:
            if message.contains_media:
                raise ValueError(f"{self._source}: text only; a {message.role} message contains media")
        if self._template is None:
            return self._concatenate(messages, add_eos)
        plain = [{"role": m.role, "content": m.text_content} for m in messages]
        open_reply = not add_eos and bool(plain) and plain[-1]["role"] == "assistant"
        # Character spans of each message: the growth of the rendered prefix.
        ends, masked, text = [], [], ""
        for i in range(len(plain)):
            last_open = open_reply and i == len(plain) - 1
            rendered = self.render(plain[:i] if last_open else plain[: i + 1], add_generation_prompt=last_open)
            if last_open:
                rendered += plain[i]["content"]
            if not rendered.startswith(text):
                raise ValueError(f"{self._source}: the chat template renders message {i - 1} differently once "
                                 f"message {i} follows, so its tokens cannot be masked per message")
            text = rendered
            ends.append(len(text))
            masked.append(messages[i].masked)
        if not add_eos and not open_reply:
            full = self.render(plain, add_generation_prompt=True)
            ends.append(len(full))
            masked.append(True)  # the generation prompt is not trained on
            text = full
        encoding = self.base.tokenizer.encode(text, add_special_tokens=False)
        tokens, mask, segment = list(encoding.ids), [], 0
        for start, _ in encoding.offsets:
            while segment < len(ends) - 1 and start >= ends[segment]:
                segment += 1
            mask.append(masked[segment] if ends else True)
        return self._truncate(tokens, mask, add_eos)

    def _concatenate(self, messages: List[Message], add_eos: bool) -> Tuple[List[int], List[bool]]:
        tokens = [] if self.bos_id is None else [self.bos_id]
        mask = [True] * len(tokens)
        for message in messages:
            ids = self.encode(message.text_content, add_bos=False, add_eos=False)
            tokens += ids
            mask += [message.masked] * len(ids)
        if add_eos:
            tokens.append(self.eos_id)
            mask.append(messages[-1].masked if messages else True)
        return self._truncate(tokens, mask, add_eos)

    def _truncate(self, tokens: List[int], mask: List[bool], add_eos: bool) -> Tuple[List[int], List[bool]]:
        if self.max_seq_len is None or len(tokens) <= self.max_seq_len:
            return tokens, mask
        tokens = truncate(tokens, self.max_seq_len, self.eos_id if add_eos else None, self.truncation_type)
        mask = truncate(mask, self.max_seq_len, True if add_eos else None, self.truncation_type)
        return tokens, mask


def hf_tokenizer(path: str, max_seq_len: Optional[int] = None, truncation_type: str = "right") -> HFModelTokenizer:
    """The model tokenizer of a Hugging Face checkpoint folder (``tokenizer.json`` + chat template).

    Args:
        path (str): the checkpoint folder.
        max_seq_len (Optional[int]): truncate samples to this length. Default None.
        truncation_type (str): ``"right"`` or ``"left"``. Default ``"right"``.

    Returns:
        HFModelTokenizer: the tokenizer.
    """
    return HFModelTokenizer(path, max_seq_len=max_seq_len, truncation_type=truncation_type)
