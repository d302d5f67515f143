"""Distributed recipes on CPU: tokens/s and peak memory per rank for 1 and 2 processes (gloo).

Runs the real ``tune run --nproc_per_node N {full,lora}_finetune_distributed`` on a random-init
Llama (vocab 512, dim 512, 8 layers, 8 heads, ffn 1376: about 26M parameters) saved once with
``save_pretrained``, on an alpaca-style JSON dataset, with the same global batch for every process
count (``--global-batch`` split evenly over the ranks). Every rank gets ``cores / N`` threads.

Throughput is the recipe's own ``tokens_per_second_per_gpu`` (trained tokens over all ranks /
step wall time / N), averaged over the steps after ``--warmup``; the total is that times N.
Peak memory is each rank's peak resident set size (``VmHWM`` in ``/proc``, polled while the job
runs; Linux only). Wall-clock figures on a shared machine are noisy; compare within one run.
The table, with a header naming the commit, command and CPU, is written to ``--out``
(``benchmarks/results/distributed_cpu.md`` by default).

Usage:
    python benchmarks/distributed_cpu.py                          # full and LoRA, 1 and 2 processes
    python benchmarks/distributed_cpu.py --recipes lora --steps 6 --dtype bf16
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  (benchmarks/report.py)

MODEL = dict(vocab_size=512, hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
             num_key_value_heads=8, max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=10000.0)
OURS = dict(vocab_size=512, embed_dim=512, intermediate_dim=1376, num_layers=8, num_heads=8, num_kv_heads=8,
            max_seq_len=512)
RECIPES = {
    "full": ("full_finetune_distributed", "llama2/7B_full", "torchtune.models.llama2.llama2",
             ["optimizer.lr=1e-4"]),
    "lora": ("lora_finetune_distributed", "llama2/7B_lora", "torchtune.models.llama2.lora_llama2",
             ["model.lora_attn_modules=[q_proj,v_proj,output_proj]", "model.apply_lora_to_mlp=True",
              "model.lora_rank=8", "model.lora_alpha=16", "lr_scheduler.num_warmup_steps=0", "optimizer.lr=1e-3"]),
}
_WORDS = ("the cat sat on a mat while dog ran to park and bird sang in tree by river quick brown fox jumps over "
          "lazy dog warm window mountain city country number answer question model data train token").split()
_ALPACA_WORDS = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                 "Write a response that appropriately completes the request. ### Instruction: ### Input: "
                 "### Response: Reverse the words.")


def _write_assets(root: Path) -> Path:
    """HF checkpoint + SentencePiece tokenizer in ``root/base``, dataset in ``root/data.json``."""
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    ckpt = root / "base"
    torch.manual_seed(0)
    config = LlamaConfig(**MODEL, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(config).save_pretrained(str(ckpt), safe_serialization=True)
    rng = random.Random(0)
    corpus = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 30))) for _ in range(2000)]
    # The alpaca prompt's words, so that they become tokens rather than byte fallbacks.
    corpus += [_ALPACA_WORDS] * 200
    (root / "corpus.txt").write_text("\n".join(corpus))
    # Llama-style: byte fallback, <unk>=0, <s>=1, </s>=2, no pad.
    spm.SentencePieceTrainer.train(input=str(root / "corpus.txt"), model_prefix=str(ckpt / "tokenizer"),
                                   vocab_size=MODEL["vocab_size"], model_type="bpe", byte_fallback=True,
                                   hard_vocab_limit=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    records = []
    for _ in range(512):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 20))]
        records.append({"instruction": "Reverse the words.", "input": " ".join(words),
                        "output": " ".join(reversed(words))})
    (root / "data.json").write_text(json.dumps(records))
    return ckpt


def _overrides(root: Path, out: Path, recipe: str, batch_size: int, steps: int, dtype: str) -> List[str]:
    _, _, builder, extra = RECIPES[recipe]
    return [
        f"output_dir={out}",
        f"checkpointer.checkpoint_dir={root / 'base'}",
        "checkpointer.checkpoint_files=[model.safetensors]",
        f"tokenizer.path={root / 'base' / 'tokenizer.model'}",
        "tokenizer.max_seq_len=512",
        "dataset._component_=torchtune.datasets.alpaca_dataset",
        "dataset.source=json",
        f"dataset.data_files={root / 'data.json'}",
        "dataset.packed=False",
        f"model._component_={builder}",
        *[f"model.{k}={v}" for k, v in OURS.items()],
        "device=cpu", f"dtype={dtype}", "seed=0", "shuffle=False", "compile=False",
        "enable_activation_checkpointing=False", "optimizer.fused=False", "clip_grad_norm=null",
        f"batch_size={batch_size}", "gradient_accumulation_steps=1", f"max_steps_per_epoch={steps}",
        "log_every_n_steps=1", "log_peak_memory_stats=False", "save_adapter_weights_only=True",
        "metric_logger._component_=torchtune.training.metric_logging.DiskLogger", f"metric_logger.log_dir={out}/logs",
        *extra,
    ]


def _rank_of(pid: int) -> Optional[int]:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [e[len(b"RANK="):] for e in env if e.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


def _peak_rss_mib(pid: int) -> Optional[float]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None


def _workers(parent: int) -> List[int]:
    """Processes started by the launcher (``parent``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                pids.append(int(entry.name))
    return pids


def _run(root: Path, recipe: str, nproc: int, global_batch: int, steps: int, warmup: int, dtype: str) -> Dict:
    name, config, _, _ = RECIPES[recipe]
    out = root / f"{recipe}_{nproc}"
    tune = Path(sys.executable).with_name("tune")  # this environment's `tune` command
    tune = str(tune) if tune.exists() else (shutil.which("tune") or "tune")
    args = [tune, "run", "--nproc_per_node", str(nproc), name,
            "--config", config, *_overrides(root, out, recipe, global_batch // nproc, steps, dtype)]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    env.pop("OMP_NUM_THREADS", None)  # the recipe shares the cores between local ranks itself
    log = open(root / f"{recipe}_{nproc}.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    peaks: Dict[int, float] = {}
    while proc.poll() is None:
        for pid in _workers(proc.pid):
            rank, peak = _rank_of(pid), _peak_rss_mib(pid)
            if rank is not None and peak is not None:
                peaks[rank] = max(peaks.get(rank, 0.0), peak)
        time.sleep(0.2)
    log.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{recipe} on {nproc} process(es) failed; see {root / f'{recipe}_{nproc}.log'}")
    rates = []
    for line in next((out / "logs").glob("*.txt")).read_text().splitlines():
        match = re.match(r"Step (\d+) \| .*tokens_per_second_per_gpu:([0-9.e+-]+)", line)
        if match and int(match.group(1)) > warmup:
            rates.append(float(match.group(2)))
    per_rank = sum(rates) / len(rates)
    return {"recipe": recipe, "procs": nproc, "tok_s_rank": per_rank, "tok_s_total": per_rank * nproc,
            "peak_rss_mib": [round(peaks.get(r, float("nan"))) for r in range(nproc)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=["full", "lora"])
    parser.add_argument("--procs", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--global-batch", type=int, default=8, help="samples per optimizer step, all ranks")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of tokens/s")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown result file (default benchmarks/results/distributed_cpu.md)")
    args = parser.parse_args()
    if any(args.global_batch % n for n in args.procs):
        parser.error(f"--global-batch {args.global_batch} must divide evenly over {args.procs} processes")

    started = report.start()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_assets(root)
        results = [_run(root, r, n, args.global_batch, args.steps, args.warmup, args.dtype)
                   for r in args.recipes for n in args.procs]
    lines = ["| recipe | procs | tok/s per rank | tok/s total | peak RSS per rank (MiB) |",
             "| --- | ---: | ---: | ---: | --- |"]
    for r in results:
        lines.append(f"| {r['recipe']} | {r['procs']} | {r['tok_s_rank']:.0f} | {r['tok_s_total']:.0f} | "
                     f"{', '.join(map(str, r['peak_rss_mib']))} |")
    notes = [f"{args.dtype}, global batch {args.global_batch}, {args.steps} steps ({args.warmup} warm-up), "
             f"{len(os.sched_getaffinity(0))} cores shared by the ranks."]
    report.write_report(args.out or report.default_path(__file__), "Distributed recipes on CPU (distributed_cpu.py)",
                        "\n".join(lines), started, notes)


if __name__ == "__main__":
    main()
