import os
from typing import List, Optional, Sequence

from sentencepiece import SentencePieceProcessor

from torchtune.modules.transforms.tokenizers._utils import TRIM_PREFIX, BaseTokenizer, encode_without_dummy_prefix


class SentencePieceBaseTokenizer(BaseTokenizer):
    """Text <-> ids with a SentencePiece model file (Llama2, Mistral, Gemma ``tokenizer.model``).

    Args:
        path (str): the ``.model`` file.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``path`` is not a SentencePiece model.
    """

    def __init__(self, path: str) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Tokenizer file not found: {path}")
        try:
            self.spm_model = SentencePieceProcessor(model_file=path)
        except (RuntimeError, OSError) as e:
            raise ValueError(f"{path} is not a valid SentencePiece model file: {e}") from e
        self.vocab_size: int = self.spm_model.vocab_size()
        self.bos_id: int = self.spm_model.bos_id()
        self.eos_id: int = self.spm_model.eos_id()
        # Llama2-style models define no pad piece (-1); 0 (<unk>) is a safe fill because padded
        # positions are never attended to causally after real tokens nor trained on.
        self.pad_id: int = max(self.spm_model.pad_id(), 0)
        self._prefix_ids = self.spm_model.encode(TRIM_PREFIX)

    def encode(
        self,
        text: str,
        add_bos: bool = True,
        add_eos: bool = True,
        trim_leading_whitespace: bool = False,
        prefix: Optional[str] = None,
    ) -> List[int]:
        """Encode text.

        Args:
            text (str): the text.
            add_bos (bool): prepend BOS (if the model defines one). Default True.
            add_eos (bool): append EOS (if the model defines one). Default True.
            trim_leading_whitespace (bool): do not add the dummy-prefix space SentencePiece puts
                before the text (``"Hi"`` -> ``"Hi"``, not ``"▁Hi"``), as when the text continues
                a longer string. Done by encoding ``prefix + text`` and dropping the prefix's ids.
                Default False.
            prefix (Optional[str]): the string used for that trick, which must not merge with the
                text's first token; ``"\\n"`` if None. Only used with ``trim_leading_whitespace``.
                Default None.

        Returns:
            List[int]: token ids.
        """
        if trim_leading_whitespace and text:
            if prefix is None:
                ids = encode_without_dummy_prefix(self.spm_model.encode, text, self._prefix_ids)
            else:
                ids = encode_without_dummy_prefix(self.spm_model.encode, text, self.spm_model.encode(prefix), prefix)
        else:
            ids = self.spm_model.encode(text)
        if add_bos and self.bos_id >= 0:
            ids.insert(0, self.bos_id)
        if add_eos and self.eos_id >= 0:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Decode ids to text; BOS, EOS and other control pieces produce no text.

        Args:
            ids (Sequence[int]): token ids, a list or a 1-D tensor.

        Returns:
            str: the text.
        """
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return self.spm_model.decode(ids)
