import base64
import re

import pytest
import torch

from tests.test_utils.tokenizer_fixtures import TIKTOKEN_PATTERN, write_tiktoken_bpe
from torchtune.modules.transforms.tokenizers import TikTokenBaseTokenizer, load_tiktoken_bpe_file
from torchtune.modules.transforms.tokenizers import _tiktoken

NUM_MERGES = 150
BASE = 256 + NUM_MERGES
SPECIAL = {"<|begin_of_text|>": BASE, "<|end_of_text|>": BASE + 1, "<|eot_id|>": BASE + 2}
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris!",
    "Ünïcödé and emoji 😀 are plain bytes",
    "  spaces   and\nnewlines\n\n",
    "",
]


@pytest.fixture(scope="module")
def bpe_path(tmp_path_factory):
    return write_tiktoken_bpe(tmp_path_factory.mktemp("tt"), num_merges=NUM_MERGES)


@pytest.fixture(scope="module")
def tokenizer(bpe_path):
    return TikTokenBaseTokenizer(str(bpe_path), name="tiny", pattern=TIKTOKEN_PATTERN,
                                 bos_id=SPECIAL["<|begin_of_text|>"], eos_id=SPECIAL["<|end_of_text|>"],
                                 special_tokens=SPECIAL)


def reference_bpe(text, ranks):
    """Textbook byte-level BPE: per regex piece, merge the adjacent pair of lowest rank until none."""
    ids = []
    for piece in re.findall(TIKTOKEN_PATTERN, text):
        parts = [bytes([b]) for b in piece.encode("utf-8")]
        while True:
            candidates = [(ranks.get(a + b, float("inf")), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            best = min(candidates, default=(float("inf"), -1))
            if best[0] == float("inf"):
                break
            i = best[1]
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        ids.extend(ranks[p] for p in parts)
    return ids


@pytest.mark.parametrize("text", TEXTS)
def test_encode_matches_reference_bpe(tokenizer, bpe_path, text):
    ranks = load_tiktoken_bpe_file(str(bpe_path))
    assert tokenizer.encode(text, add_bos=False, add_eos=False) == reference_bpe(text, ranks)
    assert tokenizer.encode(text) == [SPECIAL["<|begin_of_text|>"]] + reference_bpe(text, ranks) \
        + [SPECIAL["<|end_of_text|>"]]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_merges_are_used(tokenizer):
    # Frequent corpus words come out as fewer tokens than bytes.
    assert len(tokenizer.encode(" the capital", add_bos=False, add_eos=False)) < len(" the capital")


def test_special_token_text_is_not_injected(tokenizer):
    ids = tokenizer.encode("say <|eot_id|> now", add_bos=False, add_eos=False)
    assert not set(ids) & set(SPECIAL.values())
    assert tokenizer.decode(ids) == "say <|eot_id|> now"


def test_decode_special_tokens(tokenizer):
    hello = tokenizer.encode("hello", add_bos=False, add_eos=False)
    ids = [SPECIAL["<|begin_of_text|>"]] + hello + [SPECIAL["<|eot_id|>"], SPECIAL["<|end_of_text|>"]] + hello
    assert tokenizer.decode(ids) == "hello"
    assert tokenizer.decode(ids, truncate_at_eos=False) == "hellohello"
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<|begin_of_text|>hello<|eot_id|>"
    assert tokenizer.decode(torch.tensor(hello)) == "hello"


def test_vocab_size(tokenizer):
    assert tokenizer.base_vocab_size == BASE
    assert tokenizer.vocab_size == BASE + len(SPECIAL)


def test_long_text_chunking_keeps_tokens(tokenizer, monkeypatch):
    # Cuts land at the start of whitespace runs, where the regex splits anyway.
    text = " ".join(["The  quick brown fox,   jumps over the lazy dog.\n"] * 40)
    expected = tokenizer.tt_model.encode(text, disallowed_special=())
    monkeypatch.setattr(_tiktoken, "_MAX_CHUNK_CHARS", 37)
    assert tokenizer.encode(text, add_bos=False, add_eos=False) == expected
    # A run without whitespace longer than a chunk is cut hard but still round-trips.
    long_word = "the" * 50
    assert tokenizer.decode(tokenizer.encode(long_word)) == long_word


def test_bad_bos_id(bpe_path):
    with pytest.raises(ValueError, match="bos_id=9999 is outside the vocabulary"):
        TikTokenBaseTokenizer(str(bpe_path), name="t", pattern=TIKTOKEN_PATTERN, bos_id=9999, eos_id=BASE,
                              special_tokens={"<|x|>": BASE})


def test_malformed_file(tmp_path):
    bad = tmp_path / "bad.tiktoken"
    bad.write_text(base64.b64encode(b"a").decode() + " 0\nnot-a-valid-line\n")
    with pytest.raises(ValueError, match="bad.tiktoken is not a tiktoken BPE file: line 2"):
        load_tiktoken_bpe_file(str(bad))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tiktoken"):
        load_tiktoken_bpe_file(str(tmp_path / "missing.tiktoken"))
