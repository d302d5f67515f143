"""Offline, deterministic assets of the LoRA CPU benchmark.

- ``write_dataset``: alpaca-style records (``instruction``, ``input``, ``output``) of pseudo-words
  drawn from a Zipf-like distribution; answer lengths are log-normal, so batches carry a realistic
  amount of padding (mean sample about 120 tokens once templated and tokenized);
- ``write_tokenizer``: a Llama-style SentencePiece BPE model trained on that text;
- ``write_checkpoint``: a random-init ``LlamaForCausalLM`` saved with ``save_pretrained`` (fp32
  safetensors), the same files ``tune download`` fetches for a real model.
"""

import json
import math
import random
from pathlib import Path
from typing import Dict, List

import torch

MODEL_DIMS = dict(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                  num_attention_heads=8, max_position_embeddings=512, rms_norm_eps=1e-5)
TOKENIZER_VOCAB = 8000  # the model keeps 32000 rows: ids above the tokenizer's are simply never used

_ONSETS = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "ch", "dr", "fl", "gr", "pl", "sh", "st", "th", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "nd", "st"]


def _lexicon(rng: random.Random, size: int) -> List[str]:
    words = set()
    while len(words) < size:
        n = rng.choice([1, 1, 2, 2, 2, 3])
        words.add("".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(n)))
    return sorted(words)


def _sentence(rng: random.Random, words: List[str], weights: List[float], n: int) -> str:
    out = rng.choices(words, weights=weights, k=n)
    text = " ".join(out)
    return text[0].upper() + text[1:]


def make_records(num_records: int = 400, seed: int = 0) -> List[Dict[str, str]]:
    """Alpaca-style records of pseudo-words.

    Args:
        num_records (int): number of records. Default 400.
        seed (int): generator seed. Default 0.

    Returns:
        List[Dict[str, str]]: records with ``instruction``, ``input`` (often empty) and ``output``.
    """
    rng = random.Random(seed)
    words = _lexicon(rng, 4000)
    weights = [1.0 / (rank + 10) for rank in range(len(words))]  # Zipf-like
    records = []
    for _ in range(num_records):
        instruction = _sentence(rng, words, weights, rng.randint(4, 14)) + "?"
        has_input = rng.random() < 0.4
        inp = _sentence(rng, words, weights, rng.randint(5, 30)) + "." if has_input else ""
        # Log-normal answer length, median ~40 words with a long tail, like real instruction data.
        n_out = int(min(220, max(3, math.exp(rng.gauss(math.log(40), 0.7)))))
        sentences, left = [], n_out
        while left > 0:
            k = min(left, rng.randint(6, 16))
            sentences.append(_sentence(rng, words, weights, k) + rng.choice([".", ".", ",", "!"]))
            left -= k
        records.append({"instruction": instruction, "input": inp, "output": " ".join(sentences)})
    return records


def write_dataset(path: Path, num_records: int = 400, seed: int = 0) -> Path:
    """Write :func:`make_records` to ``path`` as a JSON list."""
    path.write_text(json.dumps(make_records(num_records, seed)))
    return path


def write_tokenizer(data_path: Path, out_dir: Path, vocab_size: int = TOKENIZER_VOCAB) -> Path:
    """Train a Llama-style SentencePiece BPE model (byte fallback; unk 0, bos 1, eos 2, no pad).

    Args:
        data_path (Path): the JSON records of :func:`write_dataset`.
        out_dir (Path): receives ``tokenizer.model``.
        vocab_size (int): target vocabulary size (a soft limit). Default 8000.

    Returns:
        Path: the ``tokenizer.model`` file.
    """
    import sentencepiece as spm

    records = json.loads(data_path.read_text())
    text = out_dir / "tokenizer_corpus.txt"
    lines = [" ".join(r.values()) for r in records]
    lines.append("Below is an instruction that describes a task, paired with an input that provides further "
                 "context. Write a response that appropriately completes the request. ### Instruction: "
                 "### Input: ### Response: [INST] [/INST]")
    text.write_text("\n".join(lines))
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(out_dir / "tokenizer"), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, character_coverage=1.0,
        hard_vocab_limit=False, num_threads=2, minloglevel=2, split_digits=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
    )
    text.unlink()
    (out_dir / "tokenizer.vocab").unlink(missing_ok=True)
    return out_dir / "tokenizer.model"


def write_checkpoint(out_dir: Path, num_kv_heads: int, seed: int = 0) -> Path:
    """Save a random-init Llama (``MODEL_DIMS``) in Hugging Face layout, fp32 safetensors.

    Args:
        out_dir (Path): receives ``config.json`` and ``model.safetensors``.
        num_kv_heads (int): 8 for multi-head attention, fewer for grouped-query attention.
        seed (int): initialisation seed. Default 0.

    Returns:
        Path: ``out_dir``.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**MODEL_DIMS, num_key_value_heads=num_kv_heads, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, rope_theta=10000.0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir
