"""The Phi-4 tokenizer: a GPT-2-style byte-level BPE (tiktoken's cl100k merges, 100352 ids) and
Phi-4's chat format, ChatML with ``<|im_sep|>`` after the role and no newlines::

    <|im_start|>system<|im_sep|>Be brief.<|im_end|><|im_start|>user<|im_sep|>Hi!<|im_end|>
    <|im_start|>assistant<|im_sep|>Hello.<|im_end|>
"""

from typing import Dict, List, Optional

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate, _TemplateType
from torchtune.models.llama3._tokenizer import CL100K_PATTERN
from torchtune.models.qwen2._tokenizer import Qwen2Tokenizer, build_qwen_tokenizer

PHI4_SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|im_start|>": 100264,
    "<|im_end|>": 100265,
    "<|im_sep|>": 100266,
    "<|endofprompt|>": 100276,
}


class Phi4Tokenizer(Qwen2Tokenizer):
    """Phi-4's tokenizer. It shares :class:`Qwen2Tokenizer`'s machinery (byte-level BPE, special
    tokens matched in text, one ChatML block per message, masks per message) with cl100k's
    pre-tokenization, no unicode normalization and Phi-4's ``<|im_sep|>`` layout.

    Args:
        path (str): ``vocab.json``, or a ``tokenizer.json`` (then ``merges_file`` is None).
        merges_file (str): ``merges.txt``.
        special_tokens (Dict[str, int]): special token -> id. Default Phi-4's named tokens (a
            ``tokenizer.json`` adds its ``<|dummy_N|>`` tokens).
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[PromptTemplate]): applied to the messages first. Default None.
        **kwargs: further :class:`Qwen2Tokenizer` arguments (``eos_token`` is ``<|im_end|>``,
            ``pad_token`` ``<|endoftext|>`` unless given).
    """

    _pattern = CL100K_PATTERN
    _normalization = None

    def __init__(
        self,
        path: str,
        merges_file: str,
        special_tokens: Dict[str, int] = PHI4_SPECIAL_TOKENS,
        max_seq_len: Optional[int] = None,
        *,
        prompt_template: Optional[PromptTemplate] = None,
        **kwargs,
    ) -> None:
        super().__init__(path, merges_file, special_tokens, max_seq_len, prompt_template=prompt_template, **kwargs)

    def _render(self, messages: List[Message], i: int, close: bool) -> str:
        message = messages[i]
        text = f"<|im_start|>{message.role}<|im_sep|>{message.text_content}"
        return text + "<|im_end|>" if close else text

    def _generation_prompt(self) -> str:
        return "<|im_start|>assistant<|im_sep|>"


def phi4_tokenizer(
    vocab_path: str = None,
    merges_path: str = None,
    special_tokens_path: Optional[str] = None,
    max_seq_len: Optional[int] = None,
    prompt_template: Optional[_TemplateType] = None,
) -> Phi4Tokenizer:
    """Phi-4's tokenizer.

    Args:
        vocab_path (str): ``vocab.json``, or a ``tokenizer.json`` (then leave ``merges_path`` None).
        merges_path (str): ``merges.txt``. Default None.
        special_tokens_path (Optional[str]): a ``tokenizer.json`` whose ``added_tokens`` give the
            special tokens. Default None (Phi-4's, or those of ``vocab_path`` when it is a ``tokenizer.json``).
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[_TemplateType]): dotted path, dict role -> ``[prefix, suffix]``,
            template instance or None. Default None.

    Returns:
        Phi4Tokenizer: the tokenizer.

    Raises:
        ValueError: if no ``vocab_path`` is given, or see :class:`Qwen2Tokenizer`.
        FileNotFoundError: if a file does not exist.
    """
    if vocab_path is None:
        raise ValueError("phi4_tokenizer needs vocab_path (vocab.json or tokenizer.json)")
    return build_qwen_tokenizer(
        Phi4Tokenizer, vocab_path, merges_path, special_tokens_path, max_seq_len, prompt_template, {}
    )
