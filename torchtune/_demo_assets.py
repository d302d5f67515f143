"""Offline assets for the built-in demo: a tiny Llama checkpoint, a tokenizer and an instruction dataset.

Everything is generated deterministically on the machine, so the demo needs no download:
- ``make_instruction_data``: alpaca-style records ({instruction, input, output}) from a few
  templates (capitals, sums, opposites, counting);
- ``train_tokenizer``: a small sentencepiece BPE model trained on that text;
- ``write_hf_checkpoint``: a random-init Llama2-architecture model saved in Hugging Face layout
  (``config.json`` + ``model.safetensors``), the same files ``tune download`` would fetch;
- ``prepare_tiny`` / ``answer_tiny``: the two ends of ``python -m torchtune._demo --tiny``.
"""

import json
import random
from pathlib import Path
from typing import Dict, List

import torch
from safetensors.torch import save_file

from torchtune.models.convert_weights import tune_to_hf
from torchtune.models.llama2 import llama2

# The demo model: Llama2 architecture, about 1.3M parameters.
DEMO_MODEL = dict(vocab_size=512, num_layers=4, num_heads=4, num_kv_heads=2, embed_dim=128,
                  intermediate_dim=384, max_seq_len=256, norm_eps=1e-5, rope_base=10000.0)

_CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
             ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"),
             ("Norway", "Oslo"), ("Chile", "Santiago"), ("Greece", "Athens"), ("Cuba", "Havana")]
_OPPOSITES = [("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"), ("day", "night"),
              ("open", "closed"), ("early", "late"), ("happy", "sad"), ("light", "dark"), ("old", "new")]


def make_instruction_data(num_samples: int = 2000, seed: int = 0) -> List[Dict[str, str]]:
    """Alpaca-style records from fixed templates.

    Args:
        num_samples (int): number of records. Default 2000.
        seed (int): seed of the generator. Default 0.

    Returns:
        List[Dict[str, str]]: records with keys ``instruction``, ``input`` and ``output``.
    """
    rng = random.Random(seed)
    records = []
    for _ in range(num_samples):
        kind = rng.randrange(4)
        if kind == 0:
            country, capital = rng.choice(_CAPITALS)
            records.append({"instruction": f"What is the capital of {country}?", "input": "",
                            "output": f"The capital of {country} is {capital}."})
        elif kind == 1:
            a, b = rng.randrange(10), rng.randrange(10)
            records.append({"instruction": "Add the two numbers.", "input": f"{a} and {b}",
                            "output": f"{a} plus {b} is {a + b}."})
        elif kind == 2:
            word, opposite = rng.choice(_OPPOSITES)
            if rng.random() < 0.5:
                word, opposite = opposite, word
            records.append({"instruction": f"What is the opposite of {word}?", "input": "",
                            "output": f"The opposite of {word} is {opposite}."})
        else:
            start = rng.randrange(1, 6)
            stop = start + rng.randrange(2, 5)
            records.append({"instruction": f"Count from {start} to {stop}.", "input": "",
                            "output": ", ".join(str(i) for i in range(start, stop + 1)) + "."})
    return records


def train_tokenizer(records: List[Dict[str, str]], model_prefix: Path, vocab_size: int = 512) -> Path:
    """Train a sentencepiece BPE tokenizer (with byte fallback) on the records' text.

    Args:
        records (List[Dict[str, str]]): the dataset.
        model_prefix (Path): output prefix; ``<prefix>.model`` is written.
        vocab_size (int): vocabulary size. Default 512.

    Returns:
        Path: the ``.model`` file.
    """
    import sentencepiece as spm

    text_file = Path(f"{model_prefix}.txt")
    lines = [" ".join(r.values()) for r in records]
    lines.append("Below is an instruction that describes a task, paired with an input that provides further "
                 "context. Write a response that appropriately completes the request. ### Instruction: "
                 "### Input: ### Response:")
    text_file.write_text("\n".join(lines))
    spm.SentencePieceTrainer.train(
        input=str(text_file), model_prefix=str(model_prefix), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, character_coverage=1.0,
        num_threads=1, minloglevel=2, split_digits=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True,
    )
    text_file.unlink()
    return Path(f"{model_prefix}.model")


def write_hf_checkpoint(out_dir: Path, seed: int = 0, **dims) -> Path:
    """Save a random-init Llama2-architecture model in Hugging Face layout.

    Args:
        out_dir (Path): folder that receives ``config.json`` and ``model.safetensors``.
        seed (int): initialisation seed. Default 0.
        **dims: overrides of ``DEMO_MODEL``.

    Returns:
        Path: ``out_dir``.
    """
    d = dict(DEMO_MODEL, **dims)
    torch.manual_seed(seed)
    model = llama2(**d)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.02)
    out_dir.mkdir(parents=True, exist_ok=True)
    sd = tune_to_hf(model.state_dict(), num_heads=d["num_heads"], num_kv_heads=d["num_kv_heads"],
                    dim=d["embed_dim"])
    save_file({k: v.contiguous() for k, v in sd.items()}, str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": d["vocab_size"], "hidden_size": d["embed_dim"], "intermediate_size": d["intermediate_dim"],
        "num_hidden_layers": d["num_layers"], "num_attention_heads": d["num_heads"],
        "num_key_value_heads": d["num_kv_heads"], "max_position_embeddings": d["max_seq_len"],
        "rms_norm_eps": d["norm_eps"], "rope_theta": d["rope_base"], "hidden_act": "silu",
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir


TINY_PROMPTS = ["What is the capital of Japan?", "What is the opposite of fast?", "Count from 2 to 5."]


def prepare_tiny(output_dir: Path) -> None:
    """Write the base checkpoint, tokenizer and dataset of ``demo/tiny_llama_lora`` under ``output_dir``."""
    base = output_dir / "base"
    records = make_instruction_data()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "data.json").write_text(json.dumps(records))
    if not (base / "tokenizer.model").exists():
        write_hf_checkpoint(base)
        train_tokenizer(records, base / "tokenizer")


def answer_tiny(output_dir: Path, epoch: int = 0) -> None:
    """Greedy answers of the fine-tuned (merged) tiny model to ``TINY_PROMPTS``."""
    from torchtune.data import AlpacaToMessages
    from torchtune.generation import generate
    from torchtune.models.llama2 import llama2_tokenizer
    from torchtune.training import FullModelHFCheckpointer

    ckpt = FullModelHFCheckpointer(
        checkpoint_dir=str(output_dir / f"epoch_{epoch}"), checkpoint_files=["model.safetensors.index.json"],
        model_type="LLAMA2", output_dir=str(output_dir / "reload"),
    )
    model = llama2(**DEMO_MODEL).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"])
    tokenizer = llama2_tokenizer(str(output_dir / "base" / "tokenizer.model"))
    # The training message transform and prompt template, minus the answer.
    to_messages = AlpacaToMessages()
    for prompt in TINY_PROMPTS:
        messages = to_messages({"instruction": prompt, "input": "", "output": ""})["messages"]
        tokens = tokenizer({"messages": messages[:1]}, inference=True)["tokens"]
        out, _ = generate(model, torch.tensor([tokens]), max_generated_tokens=24, pad_id=0,
                          temperature=0.0, stop_tokens=[tokenizer.eos_id])
        reply = tokenizer.decode(out[0, len(tokens):].tolist())
        print(f"Q: {prompt}\nA: {reply.strip()}\n")
