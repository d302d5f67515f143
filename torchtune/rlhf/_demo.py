"""Offline assets for the tiny CPU DPO configs (``recipes/configs/demo/tiny_llama_*dpo*.yaml``).

    python -m torchtune.rlhf._demo --output-dir ./dpo_demo_output
    tune run lora_dpo_single_device --config demo/tiny_llama_lora_dpo_single_device

writes, deterministically and without a download:
- ``preference.json``: synthetic preference pairs in the chosen/rejected OpenAI-message layout of
  ``torchtune.datasets.preference_dataset``: the same question with a right (chosen) and a wrong
  (rejected) answer (sums, capitals, opposites), so the preference is learnable;
- ``base/``: a random-init tiny Llama2-architecture model in Hugging Face layout and a sentencepiece
  tokenizer trained on the pairs' text.
"""

import argparse
import json
import random
from pathlib import Path
from typing import Any, Dict, List

from torchtune._demo_assets import train_tokenizer, write_hf_checkpoint

# The model of the tiny DPO configs (about 0.1M parameters): fast enough for tests and CPU demos.
TINY_DPO_MODEL = dict(vocab_size=512, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64,
                      intermediate_dim=128, max_seq_len=128, norm_eps=1e-5, rope_base=10000.0)

_CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
             ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Norway", "Oslo")]
_OPPOSITES = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"), ("day", "night")]


def _conversation(question: str, answer: str) -> List[Dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def make_preference_data(num_pairs: int = 256, seed: int = 0) -> List[Dict[str, Any]]:
    """Synthetic preference pairs: one question, a right (chosen) and a wrong (rejected) answer.

    Args:
        num_pairs (int): number of pairs. Default 256.
        seed (int): seed of the generator. Default 0.

    Returns:
        List[Dict[str, Any]]: rows with ``chosen`` and ``rejected`` conversations (user, assistant).
    """
    rng = random.Random(seed)
    rows = []
    for i in range(num_pairs):
        kind = i % 3
        if kind == 0:
            a, b = rng.randrange(1, 20), rng.randrange(1, 20)
            wrong = a + b + rng.choice([-2, -1, 1, 2])
            question, right, bad = f"What is {a} + {b}?", f"{a} + {b} = {a + b}.", f"{a} + {b} = {wrong}."
        elif kind == 1:
            (country, city), (_, other) = rng.sample(_CAPITALS, 2)
            question = f"What is the capital of {country}?"
            right, bad = f"The capital of {country} is {city}.", f"The capital of {country} is {other}."
        else:
            word, opposite = rng.choice(_OPPOSITES)
            question = f"What is the opposite of {word}?"
            right, bad = f"The opposite of {word} is {opposite}.", f"The opposite of {word} is {word}."
        rows.append({"chosen": _conversation(question, right), "rejected": _conversation(question, bad)})
    return rows


def prepare(output_dir: Path, num_pairs: int = 256, **model_dims: Any) -> Dict[str, Path]:
    """Write ``preference.json`` and ``base/`` (checkpoint and ``tokenizer.model``) under ``output_dir``.

    Args:
        output_dir (Path): the folder (created if needed).
        num_pairs (int): preference pairs to write. Default 256.
        **model_dims (Any): overrides of ``TINY_DPO_MODEL``.

    Returns:
        Dict[str, Path]: ``data`` (the JSON file) and ``base`` (the checkpoint folder).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = make_preference_data(num_pairs)
    data = output_dir / "preference.json"
    data.write_text(json.dumps(rows))
    base = write_hf_checkpoint(output_dir / "base", **dict(TINY_DPO_MODEL, **model_dims))
    texts = [{"text": " ".join(m["content"] for m in row[k])} for row in rows for k in ("chosen", "rejected")]
    train_tokenizer(texts, base / "tokenizer", vocab_size=int(dict(TINY_DPO_MODEL, **model_dims)["vocab_size"]))
    return {"data": data, "base": base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="./dpo_demo_output", help="where the assets go")
    parser.add_argument("--num-pairs", type=int, default=256)
    args = parser.parse_args()
    paths = prepare(Path(args.output_dir), num_pairs=args.num_pairs)
    print(f"wrote {paths['data']} and {paths['base']}")


if __name__ == "__main__":
    main()
