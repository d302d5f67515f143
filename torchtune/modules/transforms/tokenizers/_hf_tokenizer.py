import json
import os
from typing import Any, List, Optional, Sequence

from tokenizers import Tokenizer

from torchtune.modules.transforms.tokenizers._utils import TRIM_PREFIX, BaseTokenizer, encode_without_dummy_prefix


def _read_json(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e


class HuggingFaceBaseTokenizer(BaseTokenizer):
    """Text <-> ids with a Hugging Face ``tokenizer.json`` (through the ``tokenizers`` library),
    for model families that ship no sentencepiece or tiktoken file.

    BOS and EOS come from ``tokenizer_config.json`` (``bos_token`` / ``eos_token``) and, where
    it names none, from ``generation_config.json`` (``bos_token_id`` / ``eos_token_id``; with a
    list of EOS ids, the first is used). A model without a BOS token gets ``bos_id = None``.
    The ``tokenizer.json`` post-processor is not applied: BOS/EOS are added by ``encode`` only.

    Args:
        tokenizer_json_path (str): ``tokenizer.json``.
        tokenizer_config_json_path (Optional[str]): ``tokenizer_config.json``. Default None.
        generation_config_path (Optional[str]): ``generation_config.json``. Default None.

    Raises:
        ValueError: if neither config file is given, a file is not valid, or no EOS token is found.
        FileNotFoundError: if a file does not exist.
    """

    def __init__(
        self,
        tokenizer_json_path: str,
        *,
        tokenizer_config_json_path: Optional[str] = None,
        generation_config_path: Optional[str] = None,
    ) -> None:
        if tokenizer_config_json_path is None and generation_config_path is None:
            raise ValueError(
                "HuggingFaceBaseTokenizer needs tokenizer_config_json_path or generation_config_path "
                "to know the BOS and EOS tokens"
            )
        tokenizer_json_path = os.fspath(tokenizer_json_path)
        if not os.path.isfile(tokenizer_json_path):
            raise FileNotFoundError(f"Tokenizer file not found: {tokenizer_json_path}")
        try:
            self.tokenizer = Tokenizer.from_file(tokenizer_json_path)
        except Exception as e:  # the Rust library raises a bare Exception
            raise ValueError(f"{tokenizer_json_path} is not a valid tokenizer.json: {e}") from e
        config = _read_json(os.fspath(tokenizer_config_json_path), "tokenizer_config.json") \
            if tokenizer_config_json_path else {}
        gen_config = _read_json(os.fspath(generation_config_path), "generation_config.json") \
            if generation_config_path else {}
        self.bos_id: Optional[int] = self._token_id(config.get("bos_token"), gen_config.get("bos_token_id"))
        self.eos_id: Optional[int] = self._token_id(config.get("eos_token"), gen_config.get("eos_token_id"))
        if self.eos_id is None:
            raise ValueError(
                f"No EOS token found in {tokenizer_config_json_path or ''} {generation_config_path or ''}".strip()
            )
        self.vocab_size: int = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self._prefix_ids = self._encode_plain(TRIM_PREFIX)

    def _token_id(self, token: Any, fallback_id: Any) -> Optional[int]:
        if isinstance(token, dict):  # AddedToken serialization: {"content": "<s>", ...}
            token = token.get("content")
        if isinstance(token, str):
            idx = self.tokenizer.token_to_id(token)
            if idx is None:
                raise ValueError(f"Token {token!r} named in tokenizer_config.json is not in the vocabulary")
            return idx
        if isinstance(fallback_id, list):
            fallback_id = fallback_id[0] if fallback_id else None
        return fallback_id

    def encode(
        self,
        text: str,
        add_bos: bool = True,
        add_eos: bool = True,
        trim_leading_whitespace: bool = False,
    ) -> List[int]:
        """Encode text.

        Args:
            text (str): the text.
            add_bos (bool): prepend BOS (if the model has one). Default True.
            add_eos (bool): append EOS. Default True.
            trim_leading_whitespace (bool): do not add the leading space a Metaspace
                (sentencepiece-converted) tokenizer puts before the text. Default False.

        Returns:
            List[int]: token ids.
        """
        if trim_leading_whitespace and text:
            ids = encode_without_dummy_prefix(self._encode_plain, text, self._prefix_ids)
        else:
            ids = self._encode_plain(text)
        if add_bos and self.bos_id is not None:
            ids.insert(0, self.bos_id)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def _encode_plain(self, text: str) -> List[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Decode ids (a list or a 1-D tensor) to text, by default without special tokens."""
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
