"""Tiny tokenizer files built on the fly: a SentencePiece model, a tiktoken BPE file and a
Hugging Face ``tokenizer.json``. Each takes well under a second to build.

    from tests.test_utils.tokenizer_fixtures import train_sentencepiece
    path = train_sentencepiece(tmp_path)          # tmp_path / "tokenizer.model"
"""

import base64
import collections
import io
import json
import random
import re
from pathlib import Path
from typing import Dict, List, Tuple

# The pre-tokenization regex of the tiny tiktoken file (GPT-2's, restricted to ASCII classes so
# that Python's ``re`` can train with it). Pass it as ``pattern`` to TikTokenBaseTokenizer.
TIKTOKEN_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"""

_WORDS = (
    "the a an of to and in is it that for on with as was at by be this from or have not are but "
    "what which when where who how why can will would should could may might do does did make "
    "model data train token text question answer reply user assistant system instruction input "
    "response summary dialogue capital city country number count plus minus opposite word small "
    "large fast slow quick brown fox jumps over lazy dog cat sleeps warm window river mountain "
    "Paris Tokyo Rome Madrid France Japan Italy Spain hello world thanks please sure good great"
).split()
_MARKUP = ["[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "### Instruction:", "### Input:", "### Response:",
           "Below is an instruction that describes a task.", "<|im_start|>", "<|im_end|>"]


def tiny_corpus(num_lines: int = 600, seed: int = 0) -> List[str]:
    """Deterministic English-like lines with digits, punctuation and chat markup."""
    rng = random.Random(seed)
    lines = []
    for i in range(num_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 16))]
        if i % 3 == 0:
            words.insert(rng.randrange(len(words)), rng.choice(_MARKUP))
        if i % 4 == 0:
            words.append(str(rng.randrange(1000)))
        line = " ".join(words)
        lines.append(line[0].upper() + line[1:] + rng.choice([".", "?", "!", ",", ":"]))
    return lines


def train_sentencepiece(directory, vocab_size: int = 512, name: str = "tokenizer.model") -> Path:
    """Train a Llama-style SentencePiece BPE model (byte fallback, identity normalization,
    dummy prefix; ``<unk>``=0, ``<s>``=1, ``</s>``=2, no pad) and write it to ``directory/name``.

    Byte fallback makes every string round-trip through encode/decode.

    Returns:
        Path: the ``.model`` file.
    """
    import sentencepiece as spm

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(tiny_corpus()),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    path = Path(directory) / name
    path.write_bytes(proto.getvalue())
    return path


def _train_byte_bpe(texts: List[str], num_merges: int) -> List[bytes]:
    """Byte-level BPE merges (most frequent adjacent pair first) over ``TIKTOKEN_PATTERN`` pieces."""
    words = collections.Counter(
        tuple(bytes([b]) for b in piece.encode("utf-8"))
        for text in texts for piece in re.findall(TIKTOKEN_PATTERN, text)
    )
    merges = []
    for _ in range(num_merges):
        pairs: Dict[Tuple[bytes, bytes], int] = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merged = best[0] + best[1]
        merges.append(merged)
        new_words: Dict[tuple, int] = collections.Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += count
        words = new_words
    return merges


def write_tiktoken_bpe(directory, num_merges: int = 150, name: str = "tokenizer.tiktoken") -> Path:
    """Write a tiktoken BPE file (``<base64 token> <rank>`` lines): the 256 bytes, then
    ``num_merges`` merges learned on :func:`tiny_corpus`. Ranks run 0 .. 255 + num_merges, so
    special tokens can start at ``256 + num_merges``.

    Returns:
        Path: the file.
    """
    tokens = [bytes([b]) for b in range(256)] + _train_byte_bpe(tiny_corpus(200), num_merges)
    path = Path(directory) / name
    path.write_text("".join(f"{base64.b64encode(t).decode()} {rank}\n" for rank, t in enumerate(tokens)))
    return path


def write_hf_tokenizer(directory, vocab_size: int = 400) -> Tuple[Path, Path]:
    """Train a byte-level BPE with the ``tokenizers`` library (special tokens ``<s>``, ``</s>``,
    ``<pad>``) and write ``tokenizer.json`` and a ``tokenizer_config.json`` naming BOS/EOS.

    Returns:
        Tuple[Path, Path]: ``tokenizer.json`` and ``tokenizer_config.json``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(tiny_corpus(), trainer=trainer)
    directory = Path(directory)
    tokenizer_json = directory / "tokenizer.json"
    tok.save(str(tokenizer_json))
    config = directory / "tokenizer_config.json"
    config.write_text(json.dumps({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "pad_token": "<pad>"}))
    return tokenizer_json, config


def random_chats(num: int, seed: int = 0) -> List[List[Dict[str, str]]]:
    """Deterministic OpenAI-style conversations (``{"role", "content"}`` dicts) over
    :func:`tiny_corpus` lines plus unicode, code and long numbers: half with a system message,
    then 1-3 user/assistant turns whose messages hold 1-3 lines each."""
    rng = random.Random(seed)
    lines = tiny_corpus(200, seed=seed) + ["Ünïcödé 😀 text", "x = 1\n\nprint(x)", "12345678 apples"]
    chats = []
    for _ in range(num):
        chat = [{"role": "system", "content": rng.choice(lines)}] if rng.random() < 0.5 else []
        for _ in range(rng.randint(1, 3)):
            for role in ("user", "assistant"):
                chat.append({"role": role, "content": "\n".join(rng.sample(lines, rng.randint(1, 3)))})
        chats.append(chat)
    return chats
