"""A tiny Llama 3-style tokenizer written twice: as a tiktoken BPE file (what ``Llama3Tokenizer``
reads) and as the Hugging Face ``tokenizer.json`` that transformers' own converter
(``TikTokenConverter``, the one that produced Meta's published ``tokenizer.json``) makes from it.
Both sides therefore share the ranks, the merges, the pre-tokenization regex and the special
token ids, and differ only in the code that applies them.
"""

import base64
import collections
from pathlib import Path
from typing import Dict, List, Tuple

import regex

from tests.test_utils.tokenizer_fixtures import tiny_corpus

# Written out here rather than imported, so that a change to ours would be caught.
LLAMA3_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

_EXTRA_TEXT = [
    "You are a helpful assistant.\n\nAnswer briefly.",
    'brave_search.call(query="weather in Paris")',
    '{"name": "get_weather", "parameters": {"city": "Paris"}}',
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n",
    "Environment: ipython\nTools: brave_search, wolfram_alpha\n\n",
    "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))",
]


def _train_merges(texts: List[str], num_merges: int) -> List[bytes]:
    """Byte-level BPE (most frequent adjacent pair first) over ``LLAMA3_PATTERN`` pieces."""
    words = collections.Counter(
        tuple(bytes([b]) for b in piece.encode("utf-8"))
        for text in texts for piece in regex.findall(LLAMA3_PATTERN, text)
    )
    merged_tokens = []
    for _ in range(num_merges):
        pairs: Dict[Tuple[bytes, bytes], int] = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merged_tokens.append(best[0] + best[1])
        new_words: Dict[tuple, int] = collections.Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += count
        words = new_words
    return merged_tokens


def llama3_special_token_names(base: int) -> Dict[str, int]:
    """Llama 3's special tokens after ``base`` ranks, written from Meta's published id table
    (``<|begin_of_text|>`` = base, ... ``<|python_tag|>`` = base + 10, 245 more reserved tokens,
    ``<|image|>`` = base + 256), independently of our implementation."""
    named = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
             "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
             "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    names = named + [f"<|reserved_special_token_{i}|>" for i in range(2, 2 + 256 - len(named))] + ["<|image|>"]
    return {name: base + i for i, name in enumerate(names)}


def write_llama3_tokenizer_files(directory, num_merges: int = 300) -> Tuple[Path, Path]:
    """Write ``tokenizer.model`` (tiktoken BPE: 256 bytes + ``num_merges`` merges) and the
    equivalent ``tokenizer.json`` with the special tokens at Llama 3's offsets.

    Returns:
        Tuple[Path, Path]: the tiktoken file and the ``tokenizer.json``.
    """
    from transformers.convert_slow_tokenizer import TikTokenConverter

    texts = ["\n".join(tiny_corpus(200)), "\n\n".join(tiny_corpus(100, seed=1))] + _EXTRA_TEXT * 20
    ranks = [bytes([b]) for b in range(256)] + _train_merges(texts, num_merges)
    directory = Path(directory)
    model = directory / "tokenizer.model"
    model.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(ranks)))

    specials = llama3_special_token_names(len(ranks))
    ordered = sorted(specials, key=specials.get)
    converter = TikTokenConverter(vocab_file=str(model), pattern=LLAMA3_PATTERN, extra_special_tokens=ordered)
    hf = converter.converted()
    for name, idx in specials.items():
        assert hf.token_to_id(name) == idx, (name, idx, hf.token_to_id(name))
    tokenizer_json = directory / "tokenizer.json"
    hf.save(str(tokenizer_json))
    return model, tokenizer_json


def load_hf_tokenizer(tokenizer_json: Path, chat_template: str):
    """``PreTrainedTokenizerFast`` over ``tokenizer_json`` with Llama 3's BOS/EOS names."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_json),
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        chat_template=chat_template,
    )
