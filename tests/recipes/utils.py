"""Fixtures for recipe end-to-end tests: a tiny HF Llama checkpoint, tokenizer and dataset on disk,
and a runner for the real ``tune`` CLI in a subprocess."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

from tests.test_utils.hf_fixtures import save_hf_llama
from tests.test_utils.tokenizer_fixtures import train_sentencepiece

# Tiny model used by recipe tests; vocab matches the test tokenizer. Dims are multiples of 64 so NF4 works.
RECIPE_MODEL = dict(vocab_size=512, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64,
                    intermediate_dim=128, max_seq_len=128)

_WORDS = "the cat sat on a mat while dog ran to park and bird sang in tree by river".split()


def write_alpaca_json(path: Path, num_samples: int = 32, seed: int = 0) -> Path:
    """Small alpaca-style dataset with a learnable pattern (the answer repeats the input reversed)."""
    import random

    rng = random.Random(seed)
    records = []
    for _ in range(num_samples):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 8))]
        records.append({"instruction": "Reverse the words.", "input": " ".join(words),
                        "output": " ".join(reversed(words))})
    path.write_text(json.dumps(records))
    return path


def make_assets(root: Path) -> Dict[str, Path]:
    """Write checkpoint (config.json + sharded safetensors), tokenizer.model and data.json under ``root``."""
    ckpt = root / "base"
    save_hf_llama(ckpt, vocab_size=RECIPE_MODEL["vocab_size"], num_kv_heads=RECIPE_MODEL["num_kv_heads"],
                  max_seq_len=RECIPE_MODEL["max_seq_len"], max_shard_size="150KB")
    train_sentencepiece(ckpt, vocab_size=RECIPE_MODEL["vocab_size"])
    data = write_alpaca_json(root / "data.json")
    shards = sorted(p.name for p in ckpt.glob("model-*.safetensors")) or ["model.safetensors"]
    return {"ckpt": ckpt, "data": data, "shards": shards}


def model_overrides(builder: str = "torchtune.models.llama2.lora_llama2") -> List[str]:
    return [f"model._component_={builder}"] + [f"model.{k}={v}" for k, v in RECIPE_MODEL.items()]


def common_overrides(assets: Dict[str, Path], output_dir: Path) -> List[str]:
    """Point a shipped llama2 config at the tiny assets, on CPU in fp32, with fast settings."""
    shards = "[" + ",".join(assets["shards"]) + "]"
    return [
        f"output_dir={output_dir}",
        f"checkpointer.checkpoint_dir={assets['ckpt']}",
        f"checkpointer.checkpoint_files={shards}",
        f"tokenizer.path={assets['ckpt'] / 'tokenizer.model'}",
        "tokenizer.max_seq_len=128",
        "dataset._component_=torchtune.datasets.alpaca_dataset",
        "dataset.source=json",
        f"dataset.data_files={assets['data']}",
        "dataset.packed=False",
        "device=cpu",
        "dtype=fp32",
        "seed=0",
        "enable_activation_checkpointing=False",
        "log_every_n_steps=1",
        "metric_logger._component_=torchtune.training.metric_logging.DiskLogger",
        f"metric_logger.log_dir={output_dir}/logs",
        "compile=False",
    ]


def run_tune(args: Sequence[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real ``tune`` CLI; raises with its output if it fails."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")  # see conftest.py
    proc = subprocess.run([sys.executable, "-m", "torchtune._cli.tune", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"tune {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_losses(log_dir: Path) -> List[float]:
    """Training losses, in step order, from the DiskLogger file(s) in ``log_dir``."""
    losses: Dict[int, float] = {}
    for f in sorted(Path(log_dir).glob("*.txt")):
        for line in f.read_text().splitlines():
            m = re.match(r"Step (\d+) \| (.*)", line)
            if m and "loss:" in m.group(2):
                fields = dict(kv.split(":", 1) for kv in m.group(2).split())
                if "loss" in fields:
                    losses[int(m.group(1))] = float(fields["loss"])
    return [losses[k] for k in sorted(losses)]
