import base64
import os
import re
from typing import Dict, Iterator, List, Sequence

from tiktoken import Encoding

from torchtune.modules.transforms.tokenizers._utils import BaseTokenizer

# tiktoken's regex pre-tokenizer slows down (and may fail) on very long strings, so long texts are
# encoded in chunks cut at whitespace; a cut at whitespace leaves the token boundaries unchanged
# for the usual patterns, which never let a token cross from whitespace into a word.
_MAX_CHUNK_CHARS = 100_000
_LAST_WHITESPACE_RUN = re.compile(r"\s+\S*\Z")


def load_tiktoken_bpe_file(path: str) -> Dict[bytes, int]:
    """Read a tiktoken BPE file: one ``<base64 token> <rank>`` pair per line.

    Args:
        path (str): the file (e.g. Llama3's ``tokenizer.model``).

    Returns:
        Dict[bytes, int]: token bytes -> rank.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if a line is not ``<base64> <int>``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Tokenizer file not found: {path}")
    ranks: Dict[bytes, int] = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
            except ValueError as e:
                raise ValueError(
                    f"{path} is not a tiktoken BPE file: line {lineno} is not '<base64 token> <rank>' ({e})"
                ) from None
    return ranks


class TikTokenBaseTokenizer(BaseTokenizer):
    """Text <-> ids with a tiktoken byte-level BPE (the Llama3 family's ``tokenizer.model``).

    Args:
        path (str): tiktoken BPE file.
        name (str): a name for the encoding.
        pattern (str): the pre-tokenization regex.
        bos_id (int): BOS id.
        eos_id (int): EOS id.
        special_tokens (Dict[str, int]): special token string -> id (ids after the BPE ranks).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is malformed or ``bos_id`` / ``eos_id`` are outside the vocabulary.
    """

    def __init__(
        self,
        path: str,
        name: str,
        pattern: str,
        bos_id: int,
        eos_id: int,
        special_tokens: Dict[str, int],
    ) -> None:
        mergeable_ranks = load_tiktoken_bpe_file(path)
        self.tt_model = Encoding(
            name=name, pat_str=pattern, mergeable_ranks=mergeable_ranks, special_tokens=dict(special_tokens)
        )
        self.base_vocab_size = len(mergeable_ranks)
        self.vocab_size: int = self.tt_model.n_vocab
        for what, idx in (("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= idx < self.vocab_size:
                raise ValueError(f"{what}={idx} is outside the vocabulary of {path} (size {self.vocab_size})")
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.special_tokens = dict(special_tokens)
        self._special_ids = frozenset(self.special_tokens.values())

    def encode(
        self,
        text: str,
        add_bos: bool = True,
        add_eos: bool = True,
        trim_leading_whitespace: bool = False,
    ) -> List[int]:
        """Encode text. Special-token strings in ``text`` are encoded as plain text, so data can
        never inject control tokens.

        Args:
            text (str): the text.
            add_bos (bool): prepend BOS. Default True.
            add_eos (bool): append EOS. Default True.
            trim_leading_whitespace (bool): accepted for interface compatibility; byte-level BPE
                adds no leading space, so there is nothing to trim. Default False.

        Returns:
            List[int]: token ids.
        """
        ids = [self.bos_id] if add_bos else []
        for chunk in _chunks(text, _MAX_CHUNK_CHARS):
            ids.extend(self.tt_model.encode(chunk, allowed_special=set(), disallowed_special=()))
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(
        self,
        token_ids: Sequence[int],
        truncate_at_eos: bool = True,
        skip_special_tokens: bool = True,
    ) -> str:
        """Decode ids to text.

        Args:
            token_ids (Sequence[int]): ids (a list or a 1-D tensor).
            truncate_at_eos (bool): ignore everything from the first EOS on. Default True.
            skip_special_tokens (bool): drop special tokens. Default True.

        Returns:
            str: the text (invalid UTF-8 sequences are replaced).
        """
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
        if truncate_at_eos and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        return self.tt_model.decode(ids)


def _chunks(text: str, max_chars: int) -> Iterator[str]:
    """Split ``text`` into pieces of at most ``max_chars``, cutting at the start of a whitespace run."""
    start = 0
    while len(text) - start > max_chars:
        window = text[start : start + max_chars]
        m = _LAST_WHITESPACE_RUN.search(window)
        # No whitespace in the window (or only at its start): a hard cut is unavoidable.
        cut = m.start() if m and m.start() > 0 else max_chars
        yield window[:cut]
        start += cut
    yield text[start:]
