"""Offline assets for the tiny GRPO/PPO configs: a verifiable arithmetic task, a tokenizer, a model.

``python -m torchtune._demo_rl_assets --output-dir ./grpo_demo`` writes, deterministically:
``base/`` (a random-init tiny Llama2-architecture model in Hugging Face layout and a SentencePiece
tokenizer whose digits are single tokens) and ``prompts.json`` (rows ``{"prompt": "3+4=", "answer":
"7"}``). The task is small enough that LoRA GRPO learns it on a CPU in under a minute.
"""

import argparse
import json
import random
from pathlib import Path
from typing import Dict, List

from torchtune._demo_assets import write_hf_checkpoint

# A model that learns the task quickly on CPU; vocab matches the tokenizer below.
TOY_MODEL = dict(vocab_size=15, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=128,
                 max_seq_len=32)


def make_arithmetic_prompts(num_prompts: int = 256, max_operand: int = 4, seed: int = 0) -> List[Dict[str, str]]:
    """Addition questions ``"a+b="`` with single-digit sums, and their answers.

    Args:
        num_prompts (int): rows to write (drawn with replacement from every ``a+b`` pair). Default 256.
        max_operand (int): operands are in ``0..max_operand``. Default 4.
        seed (int): sampling seed. Default 0.

    Returns:
        List[Dict[str, str]]: ``{"prompt", "answer"}`` rows.
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(num_prompts):
        a, b = rng.randint(0, max_operand), rng.randint(0, max_operand)
        rows.append({"prompt": f"{a}+{b}=", "answer": str(a + b)})
    return rows


def train_digit_tokenizer(model_prefix: Path, vocab_size: int = TOY_MODEL["vocab_size"]) -> Path:
    """A SentencePiece model over digits, ``+``, ``=`` and a few words, each digit one token."""
    import sentencepiece as spm

    text_file = Path(f"{model_prefix}.txt")
    rng = random.Random(0)
    lines = [f"{rng.randint(0, 99)}+{rng.randint(0, 99)}={rng.randint(0, 198)}" for _ in range(500)]
    text_file.write_text("\n".join(lines))
    spm.SentencePieceTrainer.train(
        input=str(text_file), model_prefix=str(model_prefix), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=False, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, character_coverage=1.0, num_threads=1,
        minloglevel=2, split_digits=True, normalization_rule_name="identity", add_dummy_prefix=False,
        hard_vocab_limit=False,
    )
    text_file.unlink()
    return Path(f"{model_prefix}.model")


def write_toy_rl_assets(out_dir: Path, num_prompts: int = 256, max_operand: int = 2, seed: int = 0) -> Dict[str, Path]:
    """Write ``base/`` (model + tokenizer.model) and ``prompts.json`` under ``out_dir``.

    Returns:
        Dict[str, Path]: ``ckpt`` (the model folder), ``tokenizer`` and ``prompts``.
    """
    out_dir = Path(out_dir)
    ckpt = write_hf_checkpoint(out_dir / "base", seed=seed, **TOY_MODEL)
    tokenizer = train_digit_tokenizer(ckpt / "tokenizer")
    prompts = out_dir / "prompts.json"
    prompts.write_text(json.dumps(make_arithmetic_prompts(num_prompts, max_operand=max_operand, seed=seed)))
    return {"ckpt": ckpt, "tokenizer": tokenizer, "prompts": prompts}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="./grpo_demo")
    write_toy_rl_assets(Path(parser.parse_args().output_dir))
