"""The Qwen2 tokenizer: byte-level BPE plus the ChatML conversation format.

A conversation is laid out as::

    <|im_start|>system\\nBe brief.<|im_end|>\\n
    <|im_start|>user\\nHi!<|im_end|>\\n
    <|im_start|>assistant\\nHello.<|im_end|>\\n

which is what Qwen2's Hugging Face chat template writes. ``Qwen2_5Tokenizer`` and ``Qwen3Tokenizer``
build on this class and change how single messages are written (tool calls, reasoning).
"""

from typing import Any, Dict, List, Optional, Tuple, Type, TypeVar

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate, _get_prompt_template, _TemplateType
from torchtune.data._utils import truncate
from torchtune.modules.transforms import Transform
from torchtune.modules.transforms.tokenizers import GPT2BaseTokenizer, ModelTokenizer
from torchtune.modules.transforms.tokenizers._gpt2 import load_bpe_files
from torchtune.modules.transforms.tokenizers._model_tokenizer import _MessagesTransform
from torchtune.modules.transforms.tokenizers._utils import parse_hf_tokenizer_json

# Qwen's pre-tokenization regex: cl100k's, except that digits are split one by one.
QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

_Tok = TypeVar("_Tok")

QWEN2_SPECIAL_TOKENS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}


class Qwen2Tokenizer(_MessagesTransform, ModelTokenizer, Transform):
    """Qwen2's tokenizer (byte-level BPE) with the ChatML chat format for fine-tuning.

    Each message becomes ``<|im_start|>{role}\\n{content}<|im_end|>\\n``; all its tokens take the
    message's ``masked`` flag, so with the usual masking the assistant's replies, their
    ``<|im_end|>`` included, are trained and nothing else. Special-token strings in the text are
    encoded as those tokens, as Hugging Face tokenizers do.

    Args:
        path (str): ``vocab.json``, or a ``tokenizer.json`` (then ``merges_file`` is None).
        merges_file (str): ``merges.txt``.
        special_tokens (Dict[str, int]): special token -> id. Default Qwen2's three tokens.
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[PromptTemplate]): applied to the messages first. Default None
            (ChatML is built in; ``ChatMLTemplate`` would write it twice).
        errors (str): how ``decode`` treats bytes that are not valid UTF-8 (``bytes.decode``'s
            ``errors``). Default ``"replace"``.
        unk_token (Optional[str]): unknown token. Default None (byte-level BPE needs none).
        bos_token (Optional[str]): token ``encode`` puts first. Default None (Qwen has none).
        eos_token (str): token closing a message, put last by ``encode``. Default ``"<|im_end|>"``.
        pad_token (Optional[str]): padding token. Default ``"<|endoftext|>"``.
        bpe_cache_size (int): number of pre-tokenized pieces whose merges are cached.
            Default 152064.
        default_system_prompt (Optional[str]): system message put first when a conversation has
            none (Qwen2-Instruct's template uses "You are a helpful assistant."). Default None.
        truncation_type (str): ``"right"`` (keep the start) or ``"left"``. Default ``"right"``.

    Raises:
        FileNotFoundError: if a file does not exist.
        ValueError: if a file is malformed or a named token is neither special nor in the vocabulary.
    """

    # Pre-tokenization regex and unicode normal form; Phi-4, which reuses this class, differs here.
    _pattern: str = QWEN2_PATTERN
    _normalization: Optional[str] = "NFC"

    def __init__(
        self,
        path: str,
        merges_file: str,
        special_tokens: Dict[str, int] = QWEN2_SPECIAL_TOKENS,
        max_seq_len: Optional[int] = None,
        *,
        prompt_template: Optional[PromptTemplate] = None,
        errors: str = "replace",
        unk_token: Optional[str] = None,
        bos_token: Optional[str] = None,
        eos_token: str = "<|im_end|>",
        pad_token: Optional[str] = "<|endoftext|>",
        bpe_cache_size: int = 152064,
        default_system_prompt: Optional[str] = None,
        truncation_type: str = "right",
    ) -> None:
        self.base = GPT2BaseTokenizer(
            path, merges_file, pattern=self._pattern, special_tokens=special_tokens,
            unicode_normalization=self._normalization, bpe_cache_size=bpe_cache_size,
        )
        # With a tokenizer.json, its added tokens are special too.
        self.special_tokens = self.base.special_tokens
        self.base.errors = errors
        self.unk_id = self._token_id(unk_token)
        self.bos_id = self._token_id(bos_token)
        self.eos_id = self._token_id(eos_token)
        self.pad_id = self._token_id(pad_token)
        self.base.unk_id, self.base.bos_id, self.base.eos_id = self.unk_id, self.bos_id, self.eos_id
        self.im_start_id = self._token_id("<|im_start|>")
        self.im_end_id = self._token_id("<|im_end|>")
        self.stop_tokens = sorted({t for t in (self.eos_id, self.im_end_id, self.special_tokens.get("<|endoftext|>"))
                                   if t is not None})
        self.max_seq_len = max_seq_len
        self.prompt_template = prompt_template
        self.default_system_prompt = default_system_prompt
        self.truncation_type = truncation_type

    def _token_id(self, token: Optional[str]) -> Optional[int]:
        if token is None:
            return None
        idx = self.special_tokens.get(token, self.base.encoder.get(token))
        if idx is None:
            raise ValueError(f"{token!r} is neither a special token nor in the vocabulary")
        return idx

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return self.base.vocab_size

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = True) -> List[int]:
        """Encode text (NFC-normalized; special-token strings become their ids).

        Args:
            text (str): the text.
            add_bos (bool): prepend the BOS token, if the tokenizer has one. Default True.
            add_eos (bool): append the EOS token (``<|im_end|>``). Default True.

        Returns:
            List[int]: token ids.
        """
        return self.base.encode(text, add_bos=add_bos, add_eos=add_eos)

    def decode(self, token_ids: List[int], skip_special_tokens: bool = False) -> str:
        """Decode ids (a list or a 1-D tensor) to text.

        Args:
            token_ids (List[int]): token ids.
            skip_special_tokens (bool): drop special tokens. Default False.

        Returns:
            str: the text.
        """
        return self.base.decode(token_ids, skip_special_tokens=skip_special_tokens)

    # Message layout. Subclasses override these two to add their formats.
    def _prepare(self, messages: List[Message], add_eos: bool) -> List[Message]:
        """Messages to write: the template applied and the default system prompt added."""
        if self.prompt_template is not None:
            messages = self.prompt_template(messages, inference=not add_eos)
        if self.default_system_prompt is not None and (not messages or messages[0].role != "system"):
            messages = [Message(role="system", content=self.default_system_prompt, masked=True)] + list(messages)
        return list(messages)

    def _render(self, messages: List[Message], i: int, close: bool) -> str:
        """The text of ``messages[i]``; ``close=False`` leaves it open (a generation prompt)."""
        message = messages[i]
        role = "tool" if message.role == "ipython" else message.role
        text = f"<|im_start|>{role}\n{message.text_content}"
        return text + "<|im_end|>\n" if close else text

    def _generation_prompt(self) -> str:
        return "<|im_start|>assistant\n"

    def tokenize_messages(self, messages: List[Message], *, add_eos: bool = True) -> Tuple[List[int], List[bool]]:
        """Tokenize a conversation.

        Args:
            messages (List[Message]): the conversation.
            add_eos (bool): close the last message. False for a generation prompt: a final
                assistant message is left open (an empty one gives ``<|im_start|>assistant\\n``),
                and a conversation that ends with another role gets ``<|im_start|>assistant\\n``
                appended, as the templates' ``add_generation_prompt=True``. Default True.

        Returns:
            Tuple[List[int], List[bool]]: tokens and mask (True = not trained on).

        Raises:
            ValueError: if a message holds non-text content.
        """
        messages = self._prepare(messages, add_eos)
        tokens: List[int] = []
        mask: List[bool] = []
        last = len(messages) - 1
        for i, message in enumerate(messages):
            if message.contains_media:
                raise ValueError(f"Qwen tokenizers handle text only; a {message.role} message contains media")
            # Messages are cut at special tokens, so encoding them one by one gives the ids of the
            # whole conversation's text.
            close = add_eos or i < last or message.role != "assistant"
            ids = self.encode(self._render(messages, i, close=close), add_bos=False, add_eos=False)
            tokens.extend(ids)
            mask.extend([message.masked] * len(ids))
        if not add_eos and (not messages or messages[-1].role != "assistant"):
            ids = self.encode(self._generation_prompt(), add_bos=False, add_eos=False)
            tokens.extend(ids)
            mask.extend([True] * len(ids))
        if self.bos_id is not None:
            tokens, mask = [self.bos_id] + tokens, [True] + mask
        if self.max_seq_len is not None:
            tokens = truncate(tokens, self.max_seq_len, self.eos_id if add_eos else None, self.truncation_type)
            mask = truncate(mask, self.max_seq_len, True if add_eos else None, self.truncation_type)
        return tokens, mask


def resolve_qwen_files(
    path: str, merges_file: Optional[str], special_tokens_path: Optional[str]
) -> Tuple[Optional[str], Optional[Dict[str, int]]]:
    """Where a Qwen-style tokenizer finds its merges and special tokens.

    A ``tokenizer.json`` given as ``path`` (with no merges file) supplies its own added tokens
    unless ``special_tokens_path`` names another file.

    Returns:
        Tuple[Optional[str], Optional[Dict[str, int]]]: the merges file and the special tokens
        (None: the tokenizer's defaults).
    """
    if special_tokens_path is not None:
        return merges_file, parse_hf_tokenizer_json(special_tokens_path)
    if merges_file is None:
        _, _, added = load_bpe_files(path, None)
        return None, added or None
    return merges_file, None


def build_qwen_tokenizer(
    tokenizer_cls: Type[_Tok],
    path: str,
    merges_file: Optional[str],
    special_tokens_path: Optional[str],
    max_seq_len: Optional[int],
    prompt_template: Optional[_TemplateType],
    kwargs: Dict[str, Any],
) -> _Tok:
    """Build a Qwen-style tokenizer (Qwen2, Qwen2.5, Qwen3, Phi-4) from the files a builder is given.

    The files are resolved by :func:`resolve_qwen_files`; special tokens found there override
    ``kwargs["special_tokens"]``, and the prompt template is resolved by ``_get_prompt_template``.

    Args:
        tokenizer_cls (Type[_Tok]): the class, called as ``tokenizer_cls(path, merges_file, max_seq_len=...,
            prompt_template=..., **kwargs)``.
        path (str): ``vocab.json`` or ``tokenizer.json``.
        merges_file (Optional[str]): ``merges.txt``, or None when ``path`` is a ``tokenizer.json``.
        special_tokens_path (Optional[str]): a ``tokenizer.json`` with the special tokens, or None.
        max_seq_len (Optional[int]): truncation length, or None.
        prompt_template (Optional[_TemplateType]): dotted path, dict, template instance or None.
        kwargs (Dict[str, Any]): further constructor arguments; updated in place.

    Returns:
        _Tok: the tokenizer.
    """
    merges_file, special_tokens = resolve_qwen_files(path, merges_file, special_tokens_path)
    if special_tokens is not None:
        kwargs["special_tokens"] = special_tokens
    return tokenizer_cls(
        path, merges_file, max_seq_len=max_seq_len, prompt_template=_get_prompt_template(prompt_template), **kwargs
    )


def qwen2_tokenizer(
    path: str,
    merges_file: str = None,
    special_tokens_path: Optional[str] = None,
    max_seq_len: Optional[int] = None,
    prompt_template: Optional[_TemplateType] = None,
    **kwargs,
) -> Qwen2Tokenizer:
    """Qwen2's tokenizer.

    Args:
        path (str): ``vocab.json``, or a ``tokenizer.json`` (then leave ``merges_file`` None).
        merges_file (str): ``merges.txt``. Default None (``path`` is a ``tokenizer.json``).
        special_tokens_path (Optional[str]): a ``tokenizer.json`` whose ``added_tokens`` give the
            special tokens. Default None (Qwen2's, or those of ``path`` when it is a ``tokenizer.json``).
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[_TemplateType]): dotted path, dict role -> ``[prefix, suffix]``,
            template instance or None. Default None.
        **kwargs: further :class:`Qwen2Tokenizer` arguments (``default_system_prompt``, ...).

    Returns:
        Qwen2Tokenizer: the tokenizer.

    Raises:
        FileNotFoundError: if a file does not exist.
        ValueError: see :class:`Qwen2Tokenizer`.
    """
    return build_qwen_tokenizer(
        Qwen2Tokenizer, path, merges_file, special_tokens_path, max_seq_len, prompt_template, kwargs
    )
