"""The built-in default job (``make demo``): a real LoRA fine-tune on CPU, then generation.

1. Generate offline assets in ``./demo_output`` (see ``torchtune/_demo_assets.py``): a random-init
   tiny Llama2-architecture model in Hugging Face layout, a sentencepiece tokenizer, and an
   alpaca-style instruction dataset.
2. ``tune run lora_finetune_single_device --config demo/tiny_llama_lora``: the same recipe and
   CLI a user runs for Llama2-7B, with a decreasing loss printed as it trains.
3. Load the merged Hugging Face checkpoint it wrote and answer a few held-out prompts.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from torchtune._demo_assets import DEMO_MODEL, make_instruction_data, train_tokenizer, write_hf_checkpoint

PROMPTS = ["What is the capital of Japan?", "What is the opposite of fast?", "Count from 2 to 5."]


def prepare(output_dir: Path) -> None:
    """Write the base checkpoint, tokenizer and dataset under ``output_dir`` (idempotent)."""
    base = output_dir / "base"
    records = make_instruction_data()
    (output_dir / "data.json").parent.mkdir(parents=True, exist_ok=True)
    (output_dir / "data.json").write_text(json.dumps(records))
    if not (base / "tokenizer.model").exists():
        write_hf_checkpoint(base)
        train_tokenizer(records, base / "tokenizer")


def answer(output_dir: Path, epoch: int = 0) -> None:
    """Greedy answers of the fine-tuned (merged) model to ``PROMPTS``."""
    from torchtune.data import AlpacaToMessages
    from torchtune.generation import generate
    from torchtune.models.llama2 import llama2, llama2_tokenizer
    from torchtune.training import FullModelHFCheckpointer

    ckpt = FullModelHFCheckpointer(
        checkpoint_dir=str(output_dir / f"epoch_{epoch}"), checkpoint_files=["model.safetensors.index.json"],
        model_type="LLAMA2", output_dir=str(output_dir / "reload"),
    )
    model = llama2(**DEMO_MODEL).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"])
    tokenizer = llama2_tokenizer(str(output_dir / "base" / "tokenizer.model"))
    # The same message transform and tokenizer (with its default prompt template) as training,
    # minus the answer: the model continues after the prompt exactly where it learned to answer.
    to_messages = AlpacaToMessages()
    for prompt in PROMPTS:
        messages = to_messages({"instruction": prompt, "input": "", "output": ""})["messages"]
        tokens = tokenizer({"messages": messages[:1]}, inference=True)["tokens"]
        out, _ = generate(model, torch.tensor([tokens]), max_generated_tokens=24, pad_id=0,
                          temperature=0.0, stop_tokens=[tokenizer.eos_id])
        reply = tokenizer.decode(out[0, len(tokens):].tolist())
        print(f"Q: {prompt}\nA: {reply.strip()}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="./demo_output", help="where assets and outputs go")
    args, overrides = parser.parse_known_args()
    output_dir = Path(args.output_dir).resolve()
    prepare(output_dir)
    cmd = [sys.executable, "-m", "torchtune._cli.tune", "run", "lora_finetune_single_device",
           "--config", "demo/tiny_llama_lora", f"output_dir={output_dir}", *overrides]
    print("$ tune run lora_finetune_single_device --config demo/tiny_llama_lora output_dir=" + str(output_dir))
    subprocess.run(cmd, check=True)
    answer(output_dir)


if __name__ == "__main__":
    main()
