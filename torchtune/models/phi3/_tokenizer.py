"""The Phi-3 mini tokenizer: Llama 2's 32000-piece SentencePiece model plus Phi-3's added special
tokens (ids 32000-32010; the embedding has 32064 rows, the rest unused), and Phi-3-mini-instruct's
chat format::

    <s><|system|>\\nBe brief.<|end|>\\n<|user|>\\nHi!<|end|>\\n<|assistant|>\\nHello.<|end|>\\n<|endoftext|>

How the text is cut into ids follows Phi-3's Hugging Face tokenizer (``legacy=False``, the role and
``<|end|>`` tokens marked ``rstrip=True``): whitespace right after a special token, the newlines of
the format included, is absorbed by that token, and text after a special token gets no
SentencePiece dummy-prefix space. ``strip_after_special_tokens=False`` keeps those newlines as
tokens instead (the ids of the rendered text with no stripping).
"""

from typing import Dict, List, Optional, Tuple

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate, _get_prompt_template, _TemplateType
from torchtune.data._utils import truncate
from torchtune.modules.transforms import Transform
from torchtune.modules.transforms.tokenizers import (
    ModelTokenizer,
    SentencePieceBaseTokenizer,
    parse_hf_tokenizer_json,
)
from torchtune.modules.transforms.tokenizers._model_tokenizer import _MessagesTransform

# Offsets from the SentencePiece vocabulary size (32000 in Phi-3), so that a tiny test vocabulary
# gets the same layout.
PHI3_SPECIAL_TOKEN_OFFSETS = {
    "<|endoftext|>": 0,
    "<|assistant|>": 1,
    "<|placeholder1|>": 2,
    "<|placeholder2|>": 3,
    "<|placeholder3|>": 4,
    "<|placeholder4|>": 5,
    "<|system|>": 6,
    "<|end|>": 7,
    "<|placeholder5|>": 8,
    "<|placeholder6|>": 9,
    "<|user|>": 10,
}
_ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}


class Phi3MiniTokenizer(_MessagesTransform, ModelTokenizer, Transform):
    """Phi-3 mini's tokenizer, with message tokenization for fine-tuning.

    A conversation is BOS, then per message its role token, ``"\\n"``, the text, ``<|end|>`` and
    ``"\\n"``; a training sequence ends with EOS (``<|endoftext|>``), a generation prompt with
    ``<|assistant|>\\n``. Every token of a message (role and end tokens included) takes the
    message's mask; BOS takes the first message's and EOS the last message's, so with the usual
    masking only assistant messages (and the final EOS) are trained.

    Args:
        path (str): ``tokenizer.model`` (SentencePiece).
        special_tokens (Optional[Dict[str, int]]): special token -> id; must name
            ``<|endoftext|>``, ``<|end|>``, ``<|system|>``, ``<|user|>`` and ``<|assistant|>``.
            Default Phi-3's tokens at their offsets above the SentencePiece vocabulary
            (``<|endoftext|>`` = vocab size, ..., ``<|user|>`` = vocab size + 10).
        max_seq_len (Optional[int]): truncate tokenized conversations to this length (keeping a
            final EOS). Default None (no truncation).
        prompt_template (Optional[PromptTemplate]): applied to the messages first. Default None.
        strip_after_special_tokens (bool): drop whitespace that follows a special token, as
            Phi-3's Hugging Face tokenizer does. Default True.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``path`` is not a SentencePiece model or a required special token is missing.
    """

    def __init__(
        self,
        path: str,
        special_tokens: Optional[Dict[str, int]] = None,
        max_seq_len: Optional[int] = None,
        prompt_template: Optional[PromptTemplate] = None,
        *,
        strip_after_special_tokens: bool = True,
    ):
        self._spm_model = SentencePieceBaseTokenizer(path)
        if special_tokens is None:
            special_tokens = {t: self._spm_model.vocab_size + k for t, k in PHI3_SPECIAL_TOKEN_OFFSETS.items()}
        missing = [t for t in ("<|endoftext|>", "<|end|>", *_ROLE_TOKENS.values()) if t not in special_tokens]
        if missing:
            raise ValueError(f"special_tokens lacks Phi-3's {missing}")
        self.special_tokens = dict(special_tokens)
        self._id_to_special = {i: t for t, i in self.special_tokens.items()}
        self.max_seq_len = max_seq_len
        self.prompt_template = prompt_template
        self.strip_after_special_tokens = strip_after_special_tokens
        self.eos_id = self.special_tokens["<|endoftext|>"]
        self.end_id = self.special_tokens["<|end|>"]
        # The instruct model closes a reply with <|end|>; a base model with <|endoftext|>.
        self.stop_tokens = [self.eos_id, self.end_id]

    @property
    def vocab_size(self) -> int:
        return self._spm_model.vocab_size

    @property
    def bos_id(self) -> int:
        return self._spm_model.bos_id

    @property
    def pad_id(self) -> int:
        # Phi-3's Hugging Face config pads with <|endoftext|>.
        return self.eos_id

    def encode(
        self,
        text: str,
        add_bos: bool = True,
        add_eos: bool = True,
        trim_leading_whitespace: bool = False,
    ) -> List[int]:
        """Encode plain text (special-token strings in it are not parsed).

        Args:
            text (str): the text.
            add_bos (bool): prepend BOS (``<s>``). Default True.
            add_eos (bool): append EOS (``<|endoftext|>``). Default True.
            trim_leading_whitespace (bool): no SentencePiece dummy-prefix space, as for text that
                continues a longer string. Default False.

        Returns:
            List[int]: token ids.
        """
        ids = self._spm_model.encode(
            text, add_bos=add_bos, add_eos=False, trim_leading_whitespace=trim_leading_whitespace
        )
        return ids + [self.eos_id] if add_eos else ids

    def decode(self, ids: List[int], skip_special_tokens: bool = True) -> str:
        """Decode ids (a list or a 1-D tensor) to text.

        Args:
            ids (List[int]): token ids.
            skip_special_tokens (bool): drop the added special tokens and unused embedding rows;
                False writes the special tokens out as their strings. BOS gives no text either way.
                Default True.

        Returns:
            str: the text.

        Raises:
            ValueError: with ``skip_special_tokens=False``, on an id beyond the SentencePiece
                vocabulary that is no special token.
        """
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        vocab = self._spm_model.vocab_size
        if skip_special_tokens:
            return self._spm_model.decode([i for i in ids if i < vocab and i not in self._id_to_special])
        pieces, run = [], []
        for i in ids + [None]:
            if i is not None and i < vocab and i not in self._id_to_special:
                run.append(i)
                continue
            text = self._spm_model.decode(run)
            # SentencePiece drops the space of a run's first piece as if it were the dummy prefix;
            # after a special token there is none, so that space is real text.
            if pieces and run and self._spm_model.spm_model.id_to_piece(run[0]).startswith("\u2581"):
                text = " " + text
            pieces.append(text)
            run = []
            if i is not None:
                if i not in self._id_to_special:
                    raise ValueError(f"id {i} is neither a SentencePiece piece nor a special token")
                pieces.append(self._id_to_special[i])
        return "".join(pieces)

    def _encode_after_special(self, text: str) -> List[int]:
        # Text right after a special token: no dummy prefix (legacy=False), and optionally no
        # leading whitespace (the rstrip=True of Phi-3's added tokens).
        if self.strip_after_special_tokens:
            text = text.lstrip()
        return self.encode(text, add_bos=False, add_eos=False, trim_leading_whitespace=True) if text else []

    def tokenize_messages(
        self, messages: List[Message], *, add_eos: bool = False, ignore_system_prompt: bool = False
    ) -> Tuple[List[int], List[bool]]:
        """Tokenize a conversation in Phi-3-mini-instruct's chat format.

        Args:
            messages (List[Message]): the conversation.
            add_eos (bool): end with EOS, for training. False makes a generation prompt: a final
                ``<|assistant|>\\n`` after a user or system message, or a final assistant message
                left open (no ``<|end|>``) when it is empty or not ``eot``. Default False.
            ignore_system_prompt (bool): leave system messages out. Default False.

        Returns:
            Tuple[List[int], List[bool]]: tokens and mask (True = not trained on).

        Raises:
            ValueError: on a role other than system, user and assistant, or non-text content.
        """
        if self.prompt_template is not None:
            messages = self.prompt_template(messages)
        if ignore_system_prompt:
            messages = [m for m in messages if m.role != "system"]
        tokens: List[int] = []
        mask: List[bool] = []
        if messages:
            tokens, mask = [self.bos_id], [messages[0].masked]
        for i, message in enumerate(messages):
            if message.role not in _ROLE_TOKENS:
                raise ValueError(f"Phi-3 has no {message.role!r} role; use system, user or assistant")
            if message.contains_media:
                raise ValueError(f"This tokenizer handles text only; a {message.role} message contains media")
            is_open = (
                not add_eos and i == len(messages) - 1 and message.role == "assistant"
                and (not message.eot or not message.text_content)
            )
            ids = [self.special_tokens[_ROLE_TOKENS[message.role]]]
            ids += self._encode_after_special("\n" + message.text_content)
            if not is_open:
                ids += [self.end_id] + self._encode_after_special("\n")
            tokens += ids
            mask += [message.masked] * len(ids)
        if add_eos:
            tokens.append(self.eos_id)
            mask.append(messages[-1].masked if messages else True)
        elif not messages or messages[-1].role != "assistant":
            ids = [self.special_tokens["<|assistant|>"]] + self._encode_after_special("\n")
            tokens += ids
            mask += [True] * len(ids)
        if self.max_seq_len is not None and len(tokens) > self.max_seq_len:
            tokens = truncate(tokens, self.max_seq_len, self.eos_id if add_eos else None)
            mask = truncate(mask, self.max_seq_len, mask[-1] if add_eos else None)
        return tokens, mask


def phi3_mini_tokenizer(
    path: str,
    special_tokens_path: Optional[str] = None,
    max_seq_len: Optional[int] = None,
    prompt_template: Optional[_TemplateType] = None,
) -> Phi3MiniTokenizer:
    """Phi-3 mini's tokenizer.

    Args:
        path (str): ``tokenizer.model`` (SentencePiece).
        special_tokens_path (Optional[str]): a Hugging Face ``tokenizer.json`` whose
            ``added_tokens`` give the special tokens. Default None (Phi-3's, offset from the
            SentencePiece vocabulary size).
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[_TemplateType]): dotted path, dict role -> ``[prefix, suffix]``,
            template instance or None. Default None.

    Returns:
        Phi3MiniTokenizer: the tokenizer.

    Raises:
        FileNotFoundError: if a file does not exist.
        ValueError: if ``path`` is not a SentencePiece model, ``special_tokens_path`` is not a
            ``tokenizer.json`` or lacks a Phi-3 special token, or the template is invalid.
    """
    special_tokens = None if special_tokens_path is None else parse_hf_tokenizer_json(special_tokens_path)
    return Phi3MiniTokenizer(
        path=path,
        special_tokens=special_tokens,
        max_seq_len=max_seq_len,
        prompt_template=_get_prompt_template(prompt_template),
    )
