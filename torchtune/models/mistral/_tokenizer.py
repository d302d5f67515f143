from typing import Any, Dict, List, Mapping, Optional, Tuple

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate, _get_prompt_template, _TemplateType
from torchtune.data._utils import truncate
from torchtune.models.mistral._prompt_template import MistralChatTemplate
from torchtune.modules.transforms import Transform
from torchtune.modules.transforms.tokenizers import (
    ModelTokenizer,
    SentencePieceBaseTokenizer,
    tokenize_messages_no_special_tokens,
)


class MistralTokenizer(ModelTokenizer, Transform):
    """Mistral's SentencePiece tokenizer, with message tokenization for fine-tuning.

    A conversation is ``<s>``, then its messages (formatted by the prompt template), with
    ``</s>`` after each finished assistant reply. Unlike Llama 2, only the first turn opens with
    BOS (Mistral's reference format: ``<s>[INST] a [/INST] b</s>[INST] c [/INST] d</s>``); BOS
    and EOS take the mask of their message, so the model learns to emit EOS.

    Args:
        path (str): ``tokenizer.model``.
        max_seq_len (Optional[int]): truncate tokenized conversations to this length (keeping a
            final EOS). Default None (no truncation).
        prompt_template (Optional[PromptTemplate]): template applied to the messages before
            tokenization; None for none. Default ``MistralChatTemplate()``, one instance shared
            by every tokenizer built with the default.
        truncation_type (str): ``"right"`` (keep the start) or ``"left"``. Default ``"right"``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``path`` is not a SentencePiece model.
    """

    def __init__(
        self,
        path: str,
        max_seq_len: Optional[int] = None,
        prompt_template: Optional[PromptTemplate] = MistralChatTemplate(),
        truncation_type: str = "right",
    ) -> None:
        self._spm_model = SentencePieceBaseTokenizer(path)
        self.max_seq_len = max_seq_len
        self.prompt_template = prompt_template
        self.truncation_type = truncation_type
        self.stop_tokens = [self.eos_id]

    @property
    def vocab_size(self) -> int:
        return self._spm_model.vocab_size

    @property
    def bos_id(self) -> int:
        return self._spm_model.bos_id

    @property
    def eos_id(self) -> int:
        return self._spm_model.eos_id

    @property
    def pad_id(self) -> int:
        # Mistral defines no pad piece; the base tokenizer then pads with 0 (<unk>).
        return self._spm_model.pad_id

    @property
    def special_tokens(self) -> Dict[str, int]:
        sp = self._spm_model.spm_model
        return {sp.id_to_piece(i): i for i in (self.bos_id, self.eos_id) if i >= 0}

    def encode(
        self,
        text: str,
        add_bos: bool = True,
        add_eos: bool = True,
        trim_leading_whitespace: bool = False,
    ) -> List[int]:
        """Encode text; see :meth:`SentencePieceBaseTokenizer.encode`."""
        return self._spm_model.encode(
            text, add_bos=add_bos, add_eos=add_eos, trim_leading_whitespace=trim_leading_whitespace
        )

    def decode(self, token_ids: List[int]) -> str:
        """Decode ids (a list or a 1-D tensor) to text; BOS and EOS produce no text."""
        return self._spm_model.decode(token_ids)

    def tokenize_messages(self, messages: List[Message], *, add_eos: bool = True) -> Tuple[List[int], List[bool]]:
        """Tokenize a conversation.

        Args:
            messages (List[Message]): the conversation.
            add_eos (bool): close the last assistant reply with EOS; False for a generation
                prompt (earlier replies keep theirs). Default True.

        Returns:
            Tuple[List[int], List[bool]]: tokens and mask (True = not trained on).

        Raises:
            ValueError: if the template rejects the conversation or a message holds non-text
                content.
        """
        if self.prompt_template is not None:
            messages = self.prompt_template(messages, inference=not add_eos)
        # The shared helper opens every turn with BOS; Mistral's format has one BOS, added here.
        tokens, mask = tokenize_messages_no_special_tokens(
            self._spm_model, messages, bos_id=None, eos_id=self.eos_id, add_end_tokens=add_eos
        )
        if messages:
            tokens, mask = [self.bos_id] + tokens, [messages[0].masked] + mask
        if self.max_seq_len is not None and len(tokens) > self.max_seq_len:
            eos = self.eos_id if add_eos else None
            tokens = truncate(tokens, self.max_seq_len, eos, self.truncation_type)
            mask = truncate(mask, self.max_seq_len, None, self.truncation_type)
        return tokens, mask

    def __call__(self, sample: Mapping[str, Any], inference: bool = False) -> Mapping[str, Any]:
        """Replace ``sample["messages"]`` with ``tokens`` and ``mask``.

        Args:
            sample (Mapping[str, Any]): a dict with ``messages``.
            inference (bool): tokenize a generation prompt (no final EOS). Default False.

        Returns:
            Mapping[str, Any]: the other fields of ``sample`` plus ``tokens`` and ``mask``.
        """
        sample = dict(sample)
        messages = sample.pop("messages")
        sample["tokens"], sample["mask"] = self.tokenize_messages(messages, add_eos=not inference)
        return sample


def mistral_tokenizer(
    path: str,
    max_seq_len: Optional[int] = None,
    prompt_template: Optional[_TemplateType] = "torchtune.models.mistral.MistralChatTemplate",
    truncation_type: str = "right",
) -> MistralTokenizer:
    """Mistral's tokenizer (Mistral 7B v0.1 to v0.3 instruct formats with the v1 vocabulary).

    Args:
        path (str): ``tokenizer.model`` (SentencePiece).
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[_TemplateType]): a dotted path to a template class, a dict
            role -> ``[prefix, suffix]``, a template instance, or None for no template.
            Default :class:`~torchtune.models.mistral.MistralChatTemplate`.
        truncation_type (str): ``"right"`` or ``"left"``. Default ``"right"``.

    Returns:
        MistralTokenizer: the tokenizer.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``path`` is not a SentencePiece model or the template is invalid.
    """
    return MistralTokenizer(
        path=path,
        max_seq_len=max_seq_len,
        prompt_template=_get_prompt_template(prompt_template),
        truncation_type=truncation_type,
    )
