"""LoRA DPO speed on CPU: our ``lora_dpo_single_device`` recipe against TRL's ``DPOTrainer`` (transformers + peft).

Everything is generated offline and deterministically into a work folder (``lora_cpu_assets``): a
random-init Llama in Hugging Face layout (vocab 32000, dim 512, ffn 1376, 8 layers, 8 heads, about 58M
parameters), a SentencePiece tokenizer, and preference pairs built from its alpaca-style records (the
record's answer is chosen, another record's answer rejected; mean sequence about 120 tokens).

Both sides, each in its own process, one after the other, train on the same batches: the pairs are
tokenized once by our preference dataset (``torchtune.datasets.preference_dataset`` with the Llama2
tokenizer), our recipe reads them in order (``shuffle: False``), and TRL gets the very same token ids
as ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` in the same order (a sequential sampler), so
every step sees the same 4 pairs, padded the same way (right, to the longest of the 8 rows). Same
LoRA (q, v, output projections and the MLP, rank 8, alpha 16, no dropout), reference = the base with
adapters disabled, DPO sigmoid loss with beta 0.1, AdamW (lr 5e-4, weight decay 0.05, not fused),
cosine schedule without warmup, fp32, no activation checkpointing. The step-1 mean chosen log-prob of
both sides (the table's logp@1) agreeing checks that they saw the same batch and model.

Tokens/s counts the unpadded tokens of the chosen and rejected rows (prompt included) of steps 2..N
over those steps' wall time (reference forward + policy forward and backward + optimizer step): the
recipe's per-step ``tokens_per_second_per_gpu`` gives its step times, a ``TrainerCallback`` times TRL's.
The table, with a header naming the commit, command, CPU and load average, is written to ``--out``
(``benchmarks/results/dpo_cpu.md`` by default).

Usage:
    python benchmarks/dpo_cpu.py                       # 8 steps, 1 repeat
    python benchmarks/dpo_cpu.py --steps 12 --repeats 3
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import lora_cpu_assets as assets  # noqa: E402
import report  # noqa: E402

TRAIN = dict(batch_size=4, max_seq_len=512, rank=8, alpha=16, lr=5e-4, weight_decay=0.05, beta=0.1, seed=0,
             num_pairs=200)
_CHILD_ENV = {"PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
              "HF_DATASETS_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}


def make_assets(work: Path) -> None:
    """Checkpoint, tokenizer and preference pairs (skipped when already there)."""
    import random

    if not (work / "records.json").exists():
        assets.write_dataset(work / "records.json")
    if not (work / "tokenizer.model").exists():
        assets.write_tokenizer(work / "records.json", work)
    if not (work / "base" / "model.safetensors").exists():
        assets.write_checkpoint(work / "base", num_kv_heads=8)
    if not (work / "pairs.json").exists():
        records = json.loads((work / "records.json").read_text())
        rng = random.Random(0)
        pairs = []
        for i in range(TRAIN["num_pairs"]):
            r, other = records[i % len(records)], records[rng.randrange(len(records))]
            prompt = r["instruction"] + ("\n" + r["input"] if r["input"] else "")
            pairs.append({"chosen": [{"role": "user", "content": prompt}, {"role": "assistant", "content": r["output"]}],
                          "rejected": [{"role": "user", "content": prompt},
                                       {"role": "assistant", "content": other["output"]}]})
        (work / "pairs.json").write_text(json.dumps(pairs))


def our_config(work: Path, steps: int, out_dir: Path) -> Dict:
    d = assets.MODEL_DIMS
    return {
        "output_dir": str(out_dir),
        "model": {"_component_": "torchtune.models.llama2.lora_llama2",
                  "lora_attn_modules": ["q_proj", "v_proj", "output_proj"], "apply_lora_to_mlp": True,
                  "apply_lora_to_output": False, "vocab_size": d["vocab_size"], "num_layers": d["num_hidden_layers"],
                  "num_heads": d["num_attention_heads"], "num_kv_heads": 8, "embed_dim": d["hidden_size"],
                  "intermediate_dim": d["intermediate_size"], "max_seq_len": TRAIN["max_seq_len"],
                  "norm_eps": d["rms_norm_eps"], "lora_rank": TRAIN["rank"], "lora_alpha": TRAIN["alpha"],
                  "lora_dropout": 0.0},
        "tokenizer": {"_component_": "torchtune.models.llama2.llama2_tokenizer",
                      "path": str(work / "tokenizer.model"), "max_seq_len": TRAIN["max_seq_len"]},
        "checkpointer": {"_component_": "torchtune.training.FullModelHFCheckpointer",
                         "checkpoint_dir": str(work / "base"), "checkpoint_files": ["model.safetensors"],
                         "recipe_checkpoint": None, "output_dir": "${output_dir}", "model_type": "LLAMA2"},
        "resume_from_checkpoint": False, "save_adapter_weights_only": True,
        "dataset": {"_component_": "torchtune.datasets.preference_dataset", "source": "json",
                    "data_files": str(work / "pairs.json")},
        "seed": TRAIN["seed"], "shuffle": False, "batch_size": TRAIN["batch_size"],
        "optimizer": {"_component_": "torch.optim.AdamW", "fused": False, "lr": TRAIN["lr"],
                      "weight_decay": TRAIN["weight_decay"]},
        "lr_scheduler": {"_component_": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
                         "num_warmup_steps": 0},
        "loss": {"_component_": "torchtune.rlhf.loss.DPOLoss", "beta": TRAIN["beta"]},
        "epochs": 1, "max_steps_per_epoch": steps, "gradient_accumulation_steps": 1, "clip_grad_norm": None,
        "compile": False, "device": "cpu", "dtype": "fp32",
        "enable_activation_checkpointing": False, "enable_activation_offloading": False,
        "metric_logger": {"_component_": "torchtune.training.metric_logging.DiskLogger",
                          "log_dir": "${output_dir}/logs", "filename": "log.txt"},
        "log_every_n_steps": 1, "log_peak_memory_stats": False,
    }


def write_trl_pairs(cfg: Dict, steps: int, path: Path) -> List[int]:
    """Our tokenized pairs as TRL's prompt/chosen/rejected ids, in training order; returns tokens per step."""
    from omegaconf import OmegaConf

    from torchtune import config

    cfg = OmegaConf.create(cfg)
    dataset = config.instantiate(cfg.dataset, config.instantiate(cfg.tokenizer))
    rows, tokens = [], []
    for i in range(steps * TRAIN["batch_size"]):
        item = dataset[i]
        ids_c, ids_r = item["chosen_input_ids"], item["rejected_input_ids"]
        p = next(j for j, lb in enumerate(item["chosen_labels"]) if lb != -100)
        assert ids_c[:p] == ids_r[:p] and item["rejected_labels"][p - 1] == -100 != item["rejected_labels"][p]
        rows.append({"prompt_ids": ids_c[:p], "chosen_ids": ids_c[p:], "rejected_ids": ids_r[p:]})
        tokens.append(len(ids_c) + len(ids_r))
    path.write_text(json.dumps(rows))
    bs = TRAIN["batch_size"]
    return [sum(tokens[s * bs:(s + 1) * bs]) for s in range(steps)]


def trl_child(spec_path: str) -> None:
    """Runs in its own process: TRL's DPOTrainer on the pairs of ``spec['pairs']``, timing each step."""
    spec = json.loads(Path(spec_path).read_text())
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from torch.utils.data import SequentialSampler
    from transformers import AutoModelForCausalLM, LlamaTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(TRAIN["seed"])
    model = AutoModelForCausalLM.from_pretrained(spec["checkpoint"], dtype=torch.float32)
    tokenizer = LlamaTokenizer(vocab_file=spec["tokenizer"])
    rows = json.loads(Path(spec["pairs"]).read_text())
    args = DPOConfig(
        output_dir=spec["out"], per_device_train_batch_size=TRAIN["batch_size"], gradient_accumulation_steps=1,
        learning_rate=TRAIN["lr"], weight_decay=TRAIN["weight_decay"], lr_scheduler_type="cosine", warmup_steps=0,
        max_steps=spec["steps"], optim="adamw_torch", beta=TRAIN["beta"], loss_type=["sigmoid"], max_length=None,
        logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, dataloader_num_workers=0,
        seed=TRAIN["seed"], bf16=False, gradient_checkpointing=False, precompute_ref_log_probs=False,
        disable_tqdm=True, remove_unused_columns=False, pad_token=tokenizer.unk_token,
    )
    placeholder = Dataset.from_list([{"prompt": "a", "chosen": " b", "rejected": " c"}] * 4)
    trainer = DPOTrainer(model=model, args=args, train_dataset=placeholder, processing_class=tokenizer,
                         peft_config=LoraConfig(r=TRAIN["rank"], lora_alpha=TRAIN["alpha"], lora_dropout=0.0,
                                                target_modules=["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                                "down_proj"], task_type="CAUSAL_LM"))
    trainer.train_dataset = Dataset.from_list(rows)  # our tokens, in our order
    trainer._get_train_sampler = lambda *a, **k: SequentialSampler(trainer.train_dataset)
    times = []

    class _Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

    trainer.add_callback(_Timer())
    trainer.train()
    logp1 = next(h["logps/chosen"] for h in trainer.state.log_history if "logps/chosen" in h)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    Path(spec["result"]).write_text(json.dumps({"step_times": times, "logp1": logp1, "losses": losses}))


def _run(cmd: List[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ, **_CHILD_ENV))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0


def run_ours(run_dir: Path, cfg: Dict) -> Dict:
    from omegaconf import OmegaConf

    OmegaConf.save(OmegaConf.create(cfg), run_dir / "ours.yaml")
    _run([sys.executable, "-m", "torchtune._cli.tune", "run", "lora_dpo_single_device", "--config",
          str(run_dir / "ours.yaml")], run_dir / "ours.log")
    steps = {}
    for line in (Path(cfg["output_dir"]) / "logs" / "log.txt").read_text().splitlines():
        m = re.match(r"Step (\d+) \| (.*)", line)
        if m:
            steps[int(m.group(1))] = {k: float(v) for k, v in (kv.split(":", 1) for kv in m.group(2).split())}
    ordered = [steps[s] for s in sorted(steps)]
    # log_probs/chosen is the mean summed log-prob of the chosen rows, as TRL's logps/chosen.
    return {"tps": [s["tokens_per_second_per_gpu"] for s in ordered], "logp1": ordered[0]["log_probs/chosen"],
            "losses": [s["loss"] for s in ordered]}


def run_trl(run_dir: Path, work: Path, steps: int) -> Dict:
    spec = {"checkpoint": str(work / "base"), "tokenizer": str(work / "tokenizer.model"),
            "pairs": str(work / "trl_pairs.json"), "steps": steps, "out": str(run_dir / "trl_out"),
            "result": str(run_dir / "trl.json")}
    (run_dir / "trl_spec.json").write_text(json.dumps(spec))
    _run([sys.executable, str(Path(__file__).resolve()), "--trl-child", str(run_dir / "trl_spec.json")],
         run_dir / "trl.log")
    return json.loads((run_dir / "trl.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", default=None, help="asset folder (default: a temporary one)")
    parser.add_argument("--out", default=None, help="result file (default benchmarks/results/dpo_cpu.md)")
    parser.add_argument("--trl-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_child:
        return trl_child(args.trl_child)

    started = report.start()
    work = Path(args.work or tempfile.mkdtemp(prefix="dpo_cpu_"))
    work.mkdir(parents=True, exist_ok=True)
    make_assets(work)
    tokens = write_trl_pairs(our_config(work, args.steps, work / "probe"), args.steps, work / "trl_pairs.json")
    rows, ratios = [], []
    for rep in range(args.repeats):
        run_dir = work / f"run{rep}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir()
        order = ["ours", "trl"] if rep % 2 == 0 else ["trl", "ours"]
        results = {}
        for side in order:
            results[side] = (run_ours(run_dir, our_config(work, args.steps, run_dir / "out")) if side == "ours"
                             else run_trl(run_dir, work, args.steps))
        ours_times = [n / r for n, r in zip(tokens, results["ours"]["tps"])]
        ours_tps = sum(tokens[1:]) / sum(ours_times[1:])
        trl_tps = sum(tokens[1:]) / sum(results["trl"]["step_times"][1:])
        ratios.append(ours_tps / trl_tps)
        rows.append(f"| {rep + 1} | {'/'.join(order)} | {ours_tps:.0f} | {trl_tps:.0f} | {ours_tps / trl_tps:.2f} | "
                    f"{results['ours']['logp1']:.3f} | {results['trl']['logp1']:.3f} | "
                    f"{results['ours']['losses'][-1]:.4f} | {results['trl']['losses'][-1]:.4f} |")
    table = "\n".join([
        "| repeat | order | ours tokens/s | TRL tokens/s | ours / TRL | ours logp@1 | TRL logp@1 | ours loss@N | "
        "TRL loss@N |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |", *rows,
        f"| median | | | | {statistics.median(ratios):.2f} | | | | |",
    ])
    notes = [f"Settings: {json.dumps(TRAIN)}, {args.steps} steps; tokens per step (unpadded, chosen + rejected "
             f"rows): {tokens}.",
             "Same model, tokens, batches and order on both sides; fp32; tokens/s over steps 2..N."]
    report.write_report(Path(args.out) if args.out else report.default_path(__file__),
                        "LoRA DPO on CPU, ours vs TRL DPOTrainer", table, started, notes)


if __name__ == "__main__":
    main()
