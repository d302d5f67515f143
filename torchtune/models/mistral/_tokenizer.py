from typing import List, Optional, Tuple

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate, _get_prompt_template, _TemplateType
from torchtune.models.mistral._prompt_template import MistralChatTemplate
from torchtune.modules.transforms import Transform
from torchtune.modules.transforms.tokenizers import (
    ModelTokenizer,
    SentencePieceBaseTokenizer,
    tokenize_messages_no_special_tokens,
)
from torchtune.modules.transforms.tokenizers._model_tokenizer import _SentencePieceModelTokenizer


class MistralTokenizer(_SentencePieceModelTokenizer, ModelTokenizer, Transform):
    """Mistral's SentencePiece tokenizer, with message tokenization for fine-tuning.

    A conversation is ``<s>``, then its messages (formatted by the prompt template), with
    ``</s>`` after each finished assistant reply. Unlike Llama 2, only the first turn opens with
    BOS (Mistral's reference format: ``<s>[INST] a [/INST] b</s>[INST] c [/INST] d</s>``); BOS
    and EOS take the mask of their message, so the model learns to emit EOS. Mistral defines no
    pad piece, so ``pad_id`` is 0 (``<unk>``).

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
        return self._truncate(tokens, mask, keep_eos=add_eos)


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
