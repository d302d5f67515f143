"""GPT-2-style byte-level BPE from ``vocab.json`` + ``merges.txt`` (or a ``tokenizer.json``).

Byte-level BPE works on the UTF-8 bytes of the text, each byte written as one printable unicode
character (GPT-2's byte alphabet), so the vocabulary covers every string without an unknown token.
Text is first split into pieces by a pre-tokenization regex; each piece is then merged pair by pair,
always applying the merge listed first in ``merges.txt`` among the adjacent pairs.
Qwen2 / Qwen2.5 / Qwen3 and Phi-4 ship their tokenizers in this format.
"""

import json
import os
import unicodedata
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import regex

from torchtune.modules.transforms.tokenizers._utils import BaseTokenizer

# GPT-2's pre-tokenization regex: contractions, letter runs, digit runs and punctuation runs, each
# with at most one leading space, then whitespace (a final space stays with the next word).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@lru_cache(maxsize=1)
def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's byte alphabet: byte value -> the printable character that stands for it.

    Printable Latin-1 bytes stand for themselves; the others (control characters, space, ...) are
    moved to code points 256 and up, in byte order, so no token string holds whitespace.

    Returns:
        Dict[int, str]: the 256 bytes -> characters.
    """
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) \
        | set(range(ord("®"), ord("ÿ") + 1))
    mapping, shifted = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


def _read_json(path: str) -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Tokenizer file not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None


def _parse_merge(merge, where: str) -> Tuple[str, str]:
    # merges.txt and older tokenizer.json files write "a b"; newer tokenizer.json files ["a", "b"].
    pair = merge.split(" ") if isinstance(merge, str) else list(merge)
    if len(pair) != 2:
        raise ValueError(f"{where}: a merge must name two tokens, got {merge!r}")
    return pair[0], pair[1]


def load_bpe_files(
    vocab_path: str, merges_path: Optional[str]
) -> Tuple[Dict[str, int], List[Tuple[str, str]], Dict[str, int]]:
    """Read a byte-level BPE: ``vocab.json`` + ``merges.txt``, or one ``tokenizer.json``.

    Args:
        vocab_path (str): ``vocab.json`` (token -> id), or a Hugging Face ``tokenizer.json`` when
            ``merges_path`` is None.
        merges_path (Optional[str]): ``merges.txt`` (one ``a b`` merge per line, an optional
            ``#version`` header), or None to read everything from the ``tokenizer.json``.

    Returns:
        Tuple: the vocabulary (token -> id), the merges in priority order, and the added tokens of a
        ``tokenizer.json`` (token -> id; empty for ``vocab.json``).

    Raises:
        FileNotFoundError: if a file does not exist.
        ValueError: if a file is malformed, or a ``tokenizer.json`` is not a BPE model, or a
            ``tokenizer.json`` comes with a ``merges_path`` (it carries its own merges).
    """
    data = _read_json(vocab_path)
    added: Dict[str, int] = {}
    if isinstance(data.get("model"), dict):
        if merges_path is not None:
            raise ValueError(f"{vocab_path} is a tokenizer.json, which carries its merges: pass no merges file")
        model = data["model"]
        if model.get("type", "BPE") != "BPE" or not isinstance(model.get("vocab"), dict):
            raise ValueError(f"{vocab_path}: expected a BPE model, got {model.get('type')!r}")
        vocab = model["vocab"]
        merges = [_parse_merge(m, vocab_path) for m in model.get("merges", [])]
        added = {t["content"]: int(t["id"]) for t in data.get("added_tokens", [])}
    else:
        if merges_path is None:
            raise ValueError(f"{vocab_path} is a vocab.json: its merges file is needed too")
        vocab = data
        merges_path = os.fspath(merges_path)
        if not os.path.isfile(merges_path):
            raise FileNotFoundError(f"Merges file not found: {merges_path}")
        with open(merges_path, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f]
        merges = [_parse_merge(line, merges_path) for line in lines if line and not line.startswith("#version")]
    if not all(isinstance(i, int) for i in vocab.values()):
        raise ValueError(f"{vocab_path}: vocabulary ids must be integers")
    return dict(vocab), merges, added


class GPT2BaseTokenizer(BaseTokenizer):
    """Text <-> ids with a GPT-2-style byte-level BPE.

    Special tokens (``special_tokens``) are matched in the text and encoded as their ids, as
    Hugging Face tokenizers do with added tokens; everything between them is pre-tokenized with
    ``pattern`` and merged.

    Args:
        vocab_path (str): ``vocab.json``, or a Hugging Face ``tokenizer.json`` (then
            ``merges_path`` is None and its ``added_tokens`` join ``special_tokens``).
        merges_path (str): ``merges.txt``.
        unk_id (int): id for pieces the vocabulary lacks; byte-level vocabularies have every byte,
            so it is only needed for incomplete ones. Default None (such a piece raises).
        bos_id (int): id ``encode`` puts first. Default None (no BOS).
        eos_id (int): id ``encode`` puts last. Default None (no EOS).
        pad_id (int): padding id. Default None.
        pattern (str): pre-tokenization regex (the ``regex`` module's syntax). Default GPT-2's.
        special_tokens (Optional[Dict[str, int]]): special token -> id. Default None.
        unicode_normalization (Optional[str]): normal form applied to text before encoding
            (``"NFC"`` for Qwen). Default None.
        bpe_cache_size (int): number of pieces whose merges are cached. Default 65536.

    Raises:
        FileNotFoundError: if a file does not exist.
        ValueError: if a file is malformed or a merge produces a token outside the vocabulary.
    """

    # How decode treats bytes that are not valid UTF-8 (``bytes.decode``'s ``errors``).
    errors: str = "replace"

    def __init__(
        self,
        vocab_path: str,
        merges_path: str,
        unk_id: int = None,
        bos_id: int = None,
        eos_id: int = None,
        pad_id: int = None,
        *,
        pattern: str = GPT2_PATTERN,
        special_tokens: Optional[Dict[str, int]] = None,
        unicode_normalization: Optional[str] = None,
        bpe_cache_size: int = 65536,
    ) -> None:
        self.encoder, merges, added = load_bpe_files(vocab_path, merges_path)
        self.decoder: Dict[int, str] = {i: t for t, i in self.encoder.items()}
        self.bpe_ranks: Dict[Tuple[str, str], int] = {}
        for rank, pair in enumerate(merges):
            if pair[0] + pair[1] not in self.encoder:
                raise ValueError(f"merge {pair!r} makes {pair[0] + pair[1]!r}, which is not in the vocabulary")
            self.bpe_ranks.setdefault(pair, rank)
        self.special_tokens: Dict[str, int] = {**added, **(special_tokens or {})}
        self._special_ids = {i: t for t, i in self.special_tokens.items()}
        self.unk_id, self.bos_id, self.eos_id, self.pad_id = unk_id, bos_id, eos_id, pad_id
        self.pattern = regex.compile(pattern)
        # Longest first, so that a special token containing another one wins.
        specials = sorted(self.special_tokens, key=len, reverse=True)
        self._special_pattern = regex.compile("|".join(map(regex.escape, specials))) if specials else None
        self.unicode_normalization = unicode_normalization
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self._cached_bpe = lru_cache(maxsize=bpe_cache_size)(self._bpe)

    @property
    def vocab_size(self) -> int:
        """Number of ids: one more than the largest id, special tokens included."""
        return max([*self.decoder, *self._special_ids, -1]) + 1

    def _bpe(self, token: str) -> Tuple[str, ...]:
        word = list(token)
        while len(word) > 1:
            ranked = [(self.bpe_ranks.get(pair, -1), i) for i, pair in enumerate(zip(word, word[1:]))]
            ranked = [(r, i) for r, i in ranked if r >= 0]
            if not ranked:
                break
            best = word[min(ranked)[1]], word[min(ranked)[1] + 1]
            merged, i = [], 0
            # Merge every occurrence of the best pair, left to right.
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return tuple(word)

    def bpe(self, token: str) -> str:
        """Merge one pre-tokenized piece (in GPT-2's byte alphabet).

        Args:
            token (str): the piece, e.g. ``"Ġworld"``.

        Returns:
            str: its BPE tokens joined by spaces, e.g. ``"Ġwor ld"``.
        """
        return " ".join(self._cached_bpe(token))

    def _encode_ordinary(self, text: str) -> List[int]:
        ids = []
        for piece in self.pattern.findall(text):
            chars = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            for token in self._cached_bpe(chars):
                idx = self.encoder.get(token, self.unk_id)
                if idx is None:
                    raise ValueError(f"token {token!r} is not in the vocabulary and no unk_id is set")
                ids.append(idx)
        return ids

    def encode(
        self, text: str, add_bos: bool = True, add_eos: bool = True, trim_leading_whitespace: bool = False
    ) -> List[int]:
        """Encode text; special-token strings in it become their ids.

        Args:
            text (str): the text.
            add_bos (bool): prepend ``bos_id`` (if set). Default True.
            add_eos (bool): append ``eos_id`` (if set). Default True.
            trim_leading_whitespace (bool): accepted for a uniform signature; byte-level BPE adds
                no dummy-prefix space, so it changes nothing. Default False.

        Returns:
            List[int]: token ids.
        """
        if self.unicode_normalization:
            text = unicodedata.normalize(self.unicode_normalization, text)
        ids: List[int] = [self.bos_id] if add_bos and self.bos_id is not None else []
        start = 0
        if self._special_pattern is not None:
            for match in self._special_pattern.finditer(text):
                ids += self._encode_ordinary(text[start:match.start()])
                ids.append(self.special_tokens[match.group()])
                start = match.end()
        ids += self._encode_ordinary(text[start:])
        if add_eos and self.eos_id is not None:
            ids.append(self.eos_id)
        return ids

    def decode(self, tokens: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Decode ids (a list or a 1-D tensor) to text.

        Args:
            tokens (Sequence[int]): token ids.
            skip_special_tokens (bool): drop special tokens instead of writing their strings.
                Default False.

        Returns:
            str: the text; byte sequences that are not valid UTF-8 follow ``errors`` (U+FFFD by default).

        Raises:
            ValueError: if an id is neither in the vocabulary nor a special token.
        """
        ids = tokens.tolist() if hasattr(tokens, "tolist") else list(tokens)
        out, pending = [], bytearray()
        for i in ids:
            if i in self._special_ids:
                if not skip_special_tokens:
                    out.append(pending.decode("utf-8", errors=self.errors))
                    out.append(self._special_ids[i])
                    pending = bytearray()
                continue
            if i not in self.decoder:
                raise ValueError(f"token id {i} is not in the vocabulary")
            pending.extend(self.byte_decoder[c] for c in self.decoder[i])
        out.append(pending.decode("utf-8", errors=self.errors))
        return "".join(out)
