from typing import List, Optional, Tuple

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplateInterface, _get_prompt_template, _TemplateType
from torchtune.models.llama2._prompt_template import Llama2ChatTemplate
from torchtune.modules.transforms import Transform
from torchtune.modules.transforms.tokenizers import (
    ModelTokenizer,
    SentencePieceBaseTokenizer,
    tokenize_messages_no_special_tokens,
)
from torchtune.modules.transforms.tokenizers._model_tokenizer import _SentencePieceModelTokenizer


class Llama2Tokenizer(_SentencePieceModelTokenizer, ModelTokenizer, Transform):
    """Llama2's SentencePiece tokenizer, with message tokenization for fine-tuning.

    Each turn starts with BOS and each finished assistant message ends with EOS, as in Meta's
    chat format; BOS/EOS take the mask of their message, so the model learns to emit EOS.

    Args:
        path (str): ``tokenizer.model``.
        max_seq_len (Optional[int]): truncate tokenized conversations to this length (keeping a
            final EOS). Default None (no truncation).
        prompt_template (Optional[PromptTemplateInterface]): template applied to the messages
            before tokenization; None for none. Default ``Llama2ChatTemplate()`` (Meta's
            ``[INST]`` chat format), one instance shared by every tokenizer built with the default.
        truncation_type (str): ``"right"`` (keep the start) or ``"left"``. Default ``"right"``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``path`` is not a SentencePiece model.
    """

    _end_tokens_arg = "add_end_tokens"

    def __init__(
        self,
        path: str,
        max_seq_len: Optional[int] = None,
        prompt_template: Optional[PromptTemplateInterface] = Llama2ChatTemplate(),
        truncation_type: str = "right",
    ) -> None:
        self._spm_model = SentencePieceBaseTokenizer(path)
        self.max_seq_len = max_seq_len
        self.prompt_template = prompt_template
        self.truncation_type = truncation_type
        self.stop_tokens = [self.eos_id]

    def tokenize_messages(
        self, messages: List[Message], *, add_start_tokens: bool = True, add_end_tokens: bool = True
    ) -> Tuple[List[int], List[bool]]:
        """Tokenize a conversation.

        Args:
            messages (List[Message]): the conversation.
            add_start_tokens (bool): open each turn with BOS; False to tokenize a conversation that
                continues already tokenized text. Default True.
            add_end_tokens (bool): end with EOS; False for a generation prompt. Default True.

        Returns:
            Tuple[List[int], List[bool]]: tokens and mask (True = not trained on).
        """
        if self.prompt_template is not None:
            messages = self.prompt_template(messages, inference=not add_end_tokens)
        tokens, mask = tokenize_messages_no_special_tokens(
            self._spm_model,
            messages,
            bos_id=self.bos_id if add_start_tokens else None,
            eos_id=self.eos_id,
            add_end_tokens=add_end_tokens,
        )
        return self._truncate(tokens, mask, keep_eos=add_end_tokens)


def llama2_tokenizer(
    path: str,
    max_seq_len: Optional[int] = None,
    prompt_template: Optional[_TemplateType] = "torchtune.models.llama2.Llama2ChatTemplate",
    truncation_type: str = "right",
) -> Llama2Tokenizer:
    """Llama2's tokenizer.

    Args:
        path (str): ``tokenizer.model`` (SentencePiece).
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[_TemplateType]): a dotted path to a template class, a dict
            role -> ``[prefix, suffix]``, a template instance, or None for no template.
            Default :class:`~torchtune.models.llama2.Llama2ChatTemplate`.
        truncation_type (str): ``"right"`` or ``"left"``. Default ``"right"``.

    Returns:
        Llama2Tokenizer: the tokenizer.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``path`` is not a SentencePiece model or the template is invalid.
    """
    return Llama2Tokenizer(
        path=path,
        max_seq_len=max_seq_len,
        prompt_template=_get_prompt_template(prompt_template),
        truncation_type=truncation_type,
    )
