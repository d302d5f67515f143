"""Tokenizer protocols and the message -> tokens logic shared by model tokenizers."""

import json
import os
from typing import Callable, Dict, List, Optional, Protocol, Tuple

from torchtune.data._messages import Message


class BaseTokenizer(Protocol):
    """Text <-> token ids, with no notion of messages (sentencepiece, tiktoken, HF tokenizers).

    The tokenizers of this package also accept ``trim_leading_whitespace`` in ``encode`` (see
    :func:`tokenize_messages_no_special_tokens`).
    """

    def encode(self, text: str, **kwargs) -> List[int]:
        ...

    def decode(self, token_ids: List[int], **kwargs) -> str:
        ...


class ModelTokenizer(Protocol):
    """A model's tokenizer: turns a conversation into tokens and a loss mask."""

    special_tokens: Dict[str, int]
    max_seq_len: Optional[int]

    def tokenize_messages(self, messages: List[Message], **kwargs) -> Tuple[List[int], List[bool]]:
        ...


# Put before a text whose leading dummy-prefix space must not appear: a newline stays its own
# token in sentencepiece-style vocabularies, so its ids are a stable prefix to drop afterwards.
TRIM_PREFIX = "\n"


def encode_without_dummy_prefix(
    encode: Callable[[str], List[int]], text: str, prefix_ids: List[int], prefix: str = TRIM_PREFIX
) -> List[int]:
    """Encode ``text`` as the continuation of a longer string, without the leading space that
    sentencepiece-style tokenizers add (``"Hi"`` -> ``"Hi"``, not ``"▁Hi"``).

    Args:
        encode (Callable[[str], List[int]]): plain encoding, without special tokens.
        text (str): the text.
        prefix_ids (List[int]): ``encode(prefix)``.
        prefix (str): a string encoded in front of ``text`` and then removed. Default ``TRIM_PREFIX``.

    Returns:
        List[int]: the ids of ``prefix + text`` without the prefix's ids; the plain encoding
        should the prefix ever merge with the text (the trick then does not apply).
    """
    ids = encode(prefix + text)
    k = len(prefix_ids)
    return ids[k:] if ids[:k] == prefix_ids else encode(text)


def tokenize_messages_no_special_tokens(
    tokenizer: BaseTokenizer,
    messages: List[Message],
    *,
    bos_id: Optional[int] = None,
    eos_id: Optional[int] = None,
    add_end_tokens: bool = True,
) -> Tuple[List[int], List[bool]]:
    """Tokenize a conversation message by message, so each token knows whether it is trained.

    A turn starts at the first message and at every message that follows a finished
    (``eot=True``) assistant message; it opens with ``bos_id`` when given. A finished assistant
    message is closed with ``eos_id`` when given. BOS and EOS take the mask of their message.

    Tokenizing each message separately must give the tokens of the turn's joined text, or the
    model is trained on token sequences it never sees at inference. Two boundary effects are
    handled: a message that continues a turn is encoded with ``trim_leading_whitespace=True``
    (no sentencepiece dummy-prefix space), and a single space ending the previous message is
    moved to the start of the next one, since tokenizers attach a space to the word after it
    (``"[/INST] " + "Sure"`` encodes like ``"[/INST]" + " Sure"``). For the same reason a
    generation prompt (``add_end_tokens=False``) drops a final space: the model generates it
    with its first word.

    Args:
        tokenizer (BaseTokenizer): its ``encode`` must accept ``add_bos``, ``add_eos`` and
            ``trim_leading_whitespace``.
        messages (List[Message]): the (already templated) conversation.
        bos_id (Optional[int]): token opening each turn. Default None.
        eos_id (Optional[int]): token closing each finished assistant message. Default None.
        add_end_tokens (bool): if False, the last message gets no EOS (a prompt for generation).
            Default True.

    Returns:
        Tuple[List[int], List[bool]]: the tokens and the mask (True = not trained on).

    Raises:
        ValueError: if a message holds non-text content.
    """
    starts, texts = [], []
    prev: Optional[Message] = None
    for message in messages:
        if message.contains_media:
            raise ValueError(f"This tokenizer handles text only; a {message.role} message contains media")
        starts.append(prev is None or (prev.role == "assistant" and prev.eot and message.role != "assistant"))
        texts.append(message.text_content)
        prev = message
    for i in range(1, len(texts)):
        if not starts[i] and texts[i - 1].endswith(" ") and texts[i][:1] not in ("", " ", "\n", "\t"):
            texts[i - 1], texts[i] = texts[i - 1][:-1], " " + texts[i]
    if not add_end_tokens and texts and texts[-1].endswith(" "):
        # The space belongs to the first word the model will generate.
        texts[-1] = texts[-1][:-1]

    tokens: List[int] = []
    mask: List[bool] = []
    last = len(messages) - 1
    for i, (message, text) in enumerate(zip(messages, texts)):
        if starts[i] and bos_id is not None:
            tokens.append(bos_id)
            mask.append(message.masked)
        if text:
            ids = tokenizer.encode(text, add_bos=False, add_eos=False, trim_leading_whitespace=not starts[i])
            tokens.extend(ids)
            mask.extend([message.masked] * len(ids))
        if message.role == "assistant" and message.eot and eos_id is not None and (add_end_tokens or i < last):
            tokens.append(eos_id)
            mask.append(message.masked)
    return tokens, mask


def parse_hf_tokenizer_json(tokenizer_json_path: str) -> Dict[str, int]:
    """The special tokens of a Hugging Face ``tokenizer.json``: its ``added_tokens``.

    Args:
        tokenizer_json_path (str): the ``tokenizer.json`` file.

    Returns:
        Dict[str, int]: token string -> id.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not JSON or has no ``added_tokens`` list.
    """
    path = os.fspath(tokenizer_json_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Tokenizer file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            added = json.load(f)["added_tokens"]
        return {token["content"]: int(token["id"]) for token in added}
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a tokenizer.json with an 'added_tokens' list ({e!r})") from None
