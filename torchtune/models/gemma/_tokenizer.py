from typing import List, Optional, Tuple

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate
from torchtune.modules.transforms import Transform
from torchtune.modules.transforms.tokenizers import (
    ModelTokenizer,
    SentencePieceBaseTokenizer,
    tokenize_messages_no_special_tokens,
)
from torchtune.modules.transforms.tokenizers._model_tokenizer import _SentencePieceModelTokenizer

END_OF_TURN = "<end_of_turn>"


class GemmaTokenizer(_SentencePieceModelTokenizer, ModelTokenizer, Transform):
    """Gemma's SentencePiece tokenizer (Gemma, Gemma 2 and Gemma 3), with message tokenization for fine-tuning.

    Gemma's vocabulary numbers ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, and holds the chat markers
    ``<start_of_turn>`` / ``<end_of_turn>`` as single pieces, so the formatted text of
    :class:`~torchtune.models.gemma.GemmaChatTemplate` encodes them as one token each. Its model
    adds no dummy-prefix space. A conversation is ``<bos>``, its messages (formatted by the prompt
    template if one is given) and, when ``add_eos`` and the last message is a finished reply,
    ``<eos>``. Generation stops at ``<eos>`` or ``<end_of_turn>``.

    Args:
        path (str): ``tokenizer.model``.
        max_seq_len (Optional[int]): truncate tokenized conversations to this length (keeping a
            final EOS). Default None (no truncation).
        prompt_template (Optional[PromptTemplate]): template applied to the messages before
            tokenization. Default None (messages joined as they are).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``path`` is not a SentencePiece model.
    """

    def __init__(
        self,
        path: str,
        max_seq_len: Optional[int] = None,
        prompt_template: Optional[PromptTemplate] = None,
    ) -> None:
        self._spm_model = SentencePieceBaseTokenizer(path)
        self.max_seq_len = max_seq_len
        self.prompt_template = prompt_template
        self.truncation_type = "right"
        sp = self._spm_model.spm_model
        end_of_turn = sp.piece_to_id(END_OF_TURN)
        has_end_of_turn = sp.id_to_piece(end_of_turn) == END_OF_TURN
        self.stop_tokens = [self.eos_id] + ([end_of_turn] if has_end_of_turn else [])

    def tokenize_messages(self, messages: List[Message], *, add_eos: bool = True) -> Tuple[List[int], List[bool]]:
        """Tokenize a conversation.

        Args:
            messages (List[Message]): the conversation.
            add_eos (bool): end with ``<eos>`` after a final finished assistant reply; False for a
                generation prompt. Default True.

        Returns:
            Tuple[List[int], List[bool]]: tokens and mask (True = not trained on).

        Raises:
            ValueError: if the template rejects the conversation or a message holds non-text content.
        """
        if self.prompt_template is not None:
            messages = self.prompt_template(messages, inference=not add_eos)
        # Turns are delimited by the template's markers, not by special tokens: no BOS or EOS
        # between messages (Gemma's chat template has none).
        tokens, mask = tokenize_messages_no_special_tokens(self._spm_model, messages, add_end_tokens=add_eos)
        if not messages:
            return tokens, mask
        tokens, mask = [self.bos_id] + tokens, [messages[0].masked] + mask
        last = messages[-1]
        if add_eos and last.role == "assistant" and last.eot:
            tokens, mask = tokens + [self.eos_id], mask + [last.masked]
        return self._truncate(tokens, mask, keep_eos=add_eos)
