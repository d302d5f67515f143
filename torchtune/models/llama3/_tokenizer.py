"""The Llama 3 tokenizer: tiktoken BPE plus Meta's header-based chat format.

A conversation is laid out as::

    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\nBe brief.<|eot_id|>
    <|start_header_id|>user<|end_header_id|>\\n\\nHi!<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\nHello.<|eot_id|>

A message that calls a tool (``Message.ipython=True``) starts its body with ``<|python_tag|>``; a
message that does not end the turn (``Message.eot=False``, e.g. a tool call awaiting its result)
ends with ``<|eom_id|>`` instead of ``<|eot_id|>``.
"""

import os
from typing import Any, Dict, List, Optional, Tuple

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate, _get_prompt_template, _TemplateType
from torchtune.data._utils import truncate
from torchtune.modules.transforms import Transform
from torchtune.modules.transforms.tokenizers import ModelTokenizer, TikTokenBaseTokenizer
from torchtune.modules.transforms.tokenizers._model_tokenizer import _MessagesTransform
from torchtune.modules.transforms.tokenizers._utils import parse_hf_tokenizer_json

# Llama 3's pre-tokenization regex (tiktoken's cl100k pattern): contractions, words with one
# leading non-letter, numbers of up to three digits, punctuation runs, newline runs, spaces.
CL100K_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# Named special tokens and their offset from the end of the BPE ranks (128000 in Meta's files).
_NAMED_SPECIAL_OFFSETS = {
    "<|begin_of_text|>": 0,
    "<|end_of_text|>": 1,
    "<|reserved_special_token_0|>": 2,
    "<|reserved_special_token_1|>": 3,
    "<|finetune_right_pad_id|>": 4,
    "<|step_id|>": 5,
    "<|start_header_id|>": 6,
    "<|end_header_id|>": 7,
    "<|eom_id|>": 8,
    "<|eot_id|>": 9,
    "<|python_tag|>": 10,
}
# Meta reserves 256 ids after the ranks; the unnamed ones are numbered from 2 on. The image token
# of the vision models comes right after that block.
_NUM_RESERVED_SLOTS = 256
_IMAGE_OFFSET = 256

# The tokens the chat format cannot do without; the others are looked up only when used.
_REQUIRED_SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                            "<|eot_id|>")


def llama3_special_tokens(base_vocab_size: int = 128000) -> Dict[str, int]:
    """Llama 3's special tokens for a BPE file of ``base_vocab_size`` ranks.

    Args:
        base_vocab_size (int): number of BPE ranks; 128000 for Meta's ``tokenizer.model``, which
            gives ``<|begin_of_text|>`` = 128000 ... ``<|python_tag|>`` = 128010 and
            ``<|image|>`` = 128256. Default 128000.

    Returns:
        Dict[str, int]: token string -> id.
    """
    tokens = {name: base_vocab_size + offset for name, offset in _NAMED_SPECIAL_OFFSETS.items()}
    first_free = len(_NAMED_SPECIAL_OFFSETS)
    for i in range(_NUM_RESERVED_SLOTS - first_free):
        tokens[f"<|reserved_special_token_{2 + i}|>"] = base_vocab_size + first_free + i
    tokens["<|image|>"] = base_vocab_size + _IMAGE_OFFSET
    return tokens


LLAMA3_SPECIAL_TOKENS = llama3_special_tokens(128000)


def _count_bpe_ranks(path: str) -> int:
    """Number of ranks in a tiktoken BPE file, counted without decoding it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Tokenizer file not found: {path}")
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


class Llama3Tokenizer(_MessagesTransform, ModelTokenizer, Transform):
    """Llama 3's tiktoken tokenizer, with the header chat format for fine-tuning.

    ``tokenize_messages`` lays a conversation out as ``<|begin_of_text|>``, then per message
    ``<|start_header_id|>{role}<|end_header_id|>\\n\\n{content}<|eot_id|>`` (see the module
    docstring for tool calls), then ``<|end_of_text|>``. Every token of a message, its header
    and end token included, takes the message's ``masked`` flag; ``<|begin_of_text|>`` and the
    final ``<|end_of_text|>`` are always masked. Message text is stripped of surrounding
    whitespace, as Meta's format and the Hugging Face chat templates do (whitespace that a prompt
    template puts between its tags and the text is kept).

    Args:
        path (str): the tiktoken BPE file (``original/tokenizer.model`` of a Llama 3 download).
        special_tokens (Optional[Dict[str, int]]): special token string -> id. Default None:
            :func:`llama3_special_tokens` for the file's number of ranks (Meta's ids for Meta's
            file).
        max_seq_len (Optional[int]): truncate tokenized conversations to this length (keeping a
            final ``<|end_of_text|>``). Default None (no truncation).
        prompt_template (Optional[PromptTemplate]): template applied to the messages before
            tokenization. Default None.
        truncation_type (str): ``"right"`` (keep the start) or ``"left"``. Default ``"right"``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is malformed, a required special token (``<|begin_of_text|>``,
            ``<|end_of_text|>``, ``<|start_header_id|>``, ``<|end_header_id|>``, ``<|eot_id|>``)
            is missing, or a special token id is also a BPE rank.
    """

    _end_tokens_arg = "add_end_tokens"

    def __init__(
        self,
        path: str,
        special_tokens: Optional[Dict[str, int]] = None,
        max_seq_len: Optional[int] = None,
        prompt_template: Optional[PromptTemplate] = None,
        truncation_type: str = "right",
    ) -> None:
        base_vocab_size = _count_bpe_ranks(path)
        self.special_tokens = dict(special_tokens) if special_tokens is not None \
            else llama3_special_tokens(base_vocab_size)
        self._validate_special_tokens(base_vocab_size)

        self.bos_id = self.special_tokens["<|begin_of_text|>"]
        self.eos_id = self.special_tokens["<|end_of_text|>"]
        self.start_header_id = self.special_tokens["<|start_header_id|>"]
        self.end_header_id = self.special_tokens["<|end_header_id|>"]
        self.eot_id = self.special_tokens["<|eot_id|>"]
        # Llama 3.0's tokenizer.json has no tool, step or image tokens: None there.
        self.eom_id = self.special_tokens.get("<|eom_id|>")
        self.python_tag = self.special_tokens.get("<|python_tag|>")
        self.step_id = self.special_tokens.get("<|step_id|>")
        self.image_id = self.special_tokens.get("<|image|>")
        # Padded positions are never trained on nor attended to, so any id works; EOS is the
        # usual choice when the file has no dedicated pad token.
        self.pad_id = self.special_tokens.get("<|finetune_right_pad_id|>", self.eos_id)
        # Generation ends at the end of a turn, of a tool call, or of the text.
        self.stop_tokens = [t for t in (self.eos_id, self.eot_id, self.eom_id) if t is not None]

        self.tt_model = TikTokenBaseTokenizer(
            path,
            name="llama3_tiktoken",
            pattern=CL100K_PATTERN,
            bos_id=self.bos_id,
            eos_id=self.eos_id,
            special_tokens=self.special_tokens,
        )
        self.max_seq_len = max_seq_len
        self.prompt_template = prompt_template
        self.truncation_type = truncation_type
        # "\n\n" after <|end_header_id|>: its ids, so that decode can drop whole headers.
        self._header_tail = self.tt_model.encode("\n\n", add_bos=False, add_eos=False)

    def _validate_special_tokens(self, base_vocab_size: int) -> None:
        missing = [t for t in _REQUIRED_SPECIAL_TOKENS if t not in self.special_tokens]
        if missing:
            raise ValueError(f"Llama3Tokenizer special_tokens lack {missing}")
        clashes = sorted(t for t, i in self.special_tokens.items() if 0 <= i < base_vocab_size)
        if clashes:
            raise ValueError(
                f"special token ids must follow the {base_vocab_size} BPE ranks of the tokenizer file, "
                f"but these are inside them: {clashes[:5]}"
            )

    @property
    def base_vocab_size(self) -> int:
        """Number of BPE ranks (without the special tokens)."""
        return self.tt_model.base_vocab_size

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included (the model's embedding size must cover it)."""
        return self.tt_model.vocab_size

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = True) -> List[int]:
        """Encode text; special-token strings inside it are encoded as plain text.

        Args:
            text (str): the text.
            add_bos (bool): prepend ``<|begin_of_text|>``. Default True.
            add_eos (bool): append ``<|end_of_text|>``. Default True.

        Returns:
            List[int]: token ids.
        """
        return self.tt_model.encode(text, add_bos=add_bos, add_eos=add_eos)

    def decode(self, token_ids: List[int], truncate_at_eos: bool = True, skip_special_tokens: bool = True) -> str:
        """Decode ids to text.

        Args:
            token_ids (List[int]): ids (a list or a 1-D tensor).
            truncate_at_eos (bool): ignore everything from the first ``<|end_of_text|>`` on.
                Default True.
            skip_special_tokens (bool): drop special tokens and whole message headers
                (``<|start_header_id|>role<|end_header_id|>\\n\\n``), leaving only the messages'
                text. Default True.

        Returns:
            str: the text.
        """
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
        if truncate_at_eos and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        if skip_special_tokens:
            ids = self._drop_headers(ids)
        return self.tt_model.decode(ids, truncate_at_eos=False, skip_special_tokens=skip_special_tokens)

    def _drop_headers(self, ids: List[int]) -> List[int]:
        kept: List[int] = []
        i, n, tail = 0, len(ids), self._header_tail
        while i < n:
            if ids[i] == self.start_header_id and self.end_header_id in ids[i + 1:]:
                i = ids.index(self.end_header_id, i + 1) + 1
                if ids[i: i + len(tail)] == tail:
                    i += len(tail)
                continue
            kept.append(ids[i])
            i += 1
        return kept

    def _tokenize_header(self, message: Message) -> List[int]:
        # The generic "tool" role is what Llama 3 calls "ipython".
        role = "ipython" if message.role == "tool" else message.role
        return (
            [self.start_header_id]
            + self.encode(role, add_bos=False, add_eos=False)
            + [self.end_header_id]
            + self._header_tail
        )

    def _tokenize_body(self, message: Message) -> List[int]:
        tokens = []
        if message.ipython:
            tokens.append(self._require(self.python_tag, "<|python_tag|>", "a tool call (ipython=True)"))
        # Adjacent text parts (a template's tags and the content) are encoded as one string, as
        # the model sees them; only the message's outer whitespace is stripped.
        segments: List[Any] = []
        for part in message.content:
            if part["type"] == "text" and segments and isinstance(segments[-1], str):
                segments[-1] += part["content"]
            else:
                segments.append(part["content"] if part["type"] == "text" else None)
        if segments and isinstance(segments[0], str):
            segments[0] = segments[0].lstrip()
        if segments and isinstance(segments[-1], str):
            segments[-1] = segments[-1].rstrip()
        for segment in segments:
            if segment is None:
                tokens.append(self._require(self.image_id, "<|image|>", "image content"))
            elif segment:
                tokens.extend(self.encode(segment, add_bos=False, add_eos=False))
        return tokens

    def _tokenize_end(self, message: Message) -> List[int]:
        if message.eot:
            return [self.eot_id]
        return [self._require(self.eom_id, "<|eom_id|>", "a message with eot=False")]

    @staticmethod
    def _require(token_id: Optional[int], name: str, what: str) -> int:
        if token_id is None:
            raise ValueError(f"{what} needs the special token {name}, which this tokenizer's special_tokens lack")
        return token_id

    def tokenize_message(
        self, message: Message, *, add_start_tokens: bool = True, add_end_tokens: bool = True
    ) -> List[int]:
        """Tokenize one message: header, body, end token.

        Args:
            message (Message): the message.
            add_start_tokens (bool): include the ``<|start_header_id|>role<|end_header_id|>\\n\\n``
                header. Default True.
            add_end_tokens (bool): include ``<|eot_id|>`` (``<|eom_id|>`` if ``message.eot`` is
                False). Default True.

        Returns:
            List[int]: token ids.

        Raises:
            ValueError: if the message needs a special token the tokenizer lacks (a tool call
                without ``<|python_tag|>``, an image without ``<|image|>``).
        """
        tokens = self._tokenize_header(message) if add_start_tokens else []
        tokens += self._tokenize_body(message)
        if add_end_tokens:
            tokens += self._tokenize_end(message)
        return tokens

    def tokenize_messages(
        self, messages: List[Message], *, add_end_tokens: bool = True
    ) -> Tuple[List[int], List[bool]]:
        """Tokenize a conversation.

        Args:
            messages (List[Message]): the conversation.
            add_end_tokens (bool): close the last message with its end token and append
                ``<|end_of_text|>``. False for a generation prompt: end the messages with an
                empty assistant message to get its open header, where the model starts writing.
                Default True.

        Returns:
            Tuple[List[int], List[bool]]: tokens and mask (True = not trained on).
        """
        if self.prompt_template is not None:
            messages = self.prompt_template(messages, inference=not add_end_tokens)
        tokens, mask = [self.bos_id], [True]
        last = len(messages) - 1
        for i, message in enumerate(messages):
            ids = self.tokenize_message(message, add_end_tokens=add_end_tokens or i < last)
            tokens.extend(ids)
            mask.extend([message.masked] * len(ids))
            if self.max_seq_len is not None and len(tokens) >= self.max_seq_len \
                    and self.truncation_type == "right":
                break  # the rest would be cut anyway
        if add_end_tokens:
            tokens.append(self.eos_id)
            mask.append(True)
        if self.max_seq_len is not None:
            end = add_end_tokens
            tokens = truncate(tokens, self.max_seq_len, self.eos_id if end else None, self.truncation_type)
            mask = truncate(mask, self.max_seq_len, True if end else None, self.truncation_type)
        return tokens, mask


def llama3_tokenizer(
    path: str,
    special_tokens_path: Optional[str] = None,
    max_seq_len: Optional[int] = None,
    prompt_template: Optional[_TemplateType] = None,
    truncation_type: str = "right",
) -> Llama3Tokenizer:
    """Llama 3's tokenizer (also for Llama 3.1, 3.2 and 3.3, which share it).

    Args:
        path (str): the tiktoken BPE file (``original/tokenizer.model``).
        special_tokens_path (Optional[str]): a Hugging Face ``tokenizer.json`` whose
            ``added_tokens`` give the special tokens; None for Llama 3's own. Default None.
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[_TemplateType]): a dotted path to a template class, a dict
            role -> ``[prefix, suffix]``, a template instance, or None (the header format alone).
            Default None.
        truncation_type (str): ``"right"`` or ``"left"``. Default ``"right"``.

    Returns:
        Llama3Tokenizer: the tokenizer.

    Raises:
        FileNotFoundError: if ``path`` or ``special_tokens_path`` does not exist.
        ValueError: see :class:`Llama3Tokenizer`, or if the template is invalid.
    """
    special_tokens = parse_hf_tokenizer_json(special_tokens_path) if special_tokens_path is not None else None
    return Llama3Tokenizer(
        path=path,
        special_tokens=special_tokens,
        max_seq_len=max_seq_len,
        prompt_template=_get_prompt_template(prompt_template),
        truncation_type=truncation_type,
    )
