"""Parts that model tokenizers share: the sample transform, and the SentencePiece-backed surface.

Private bases: each model tokenizer still lists ``ModelTokenizer`` and ``Transform`` itself.
"""

from typing import Any, Dict, List, Mapping, Tuple

from torchtune.data._utils import truncate

from torchtune.modules.transforms.tokenizers._sentencepiece import SentencePieceBaseTokenizer


class _MessagesTransform:
    """``__call__`` for a model tokenizer: ``sample["messages"]`` -> ``tokens`` and ``mask``.

    Subclasses name, in ``_end_tokens_arg``, the ``tokenize_messages`` keyword that closes the
    conversation for training (``add_eos`` or ``add_end_tokens``); a generation prompt passes False.
    """

    _end_tokens_arg = "add_eos"

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
        end_tokens = {self._end_tokens_arg: not inference}
        sample["tokens"], sample["mask"] = self.tokenize_messages(messages, **end_tokens)
        return sample


class _SentencePieceModelTokenizer(_MessagesTransform):
    """Vocabulary, special ids, ``encode`` and ``decode`` of a model tokenizer whose text goes
    through a :class:`SentencePieceBaseTokenizer` held as ``self._spm_model``.

    The special tokens are the model's BOS and EOS pieces. A model with no pad piece pads with the
    base tokenizer's default, 0 (``<unk>``). Subclasses set ``max_seq_len`` and ``truncation_type``.
    """

    _spm_model: SentencePieceBaseTokenizer

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

    def _truncate(self, tokens: List[int], mask: List[bool], keep_eos: bool) -> Tuple[List[int], List[bool]]:
        # Cut to max_seq_len from the truncation_type side; keep_eos ends a cut sequence with EOS.
        if self.max_seq_len is None or len(tokens) <= self.max_seq_len:
            return tokens, mask
        eos = self.eos_id if keep_eos else None
        tokens = truncate(tokens, self.max_seq_len, eos, self.truncation_type)
        mask = truncate(mask, self.max_seq_len, None, self.truncation_type)
        return tokens, mask
