"""What a torchtune user gets on CPU: their unchanged torchtune v0.6.1 config, ours against transformers + peft.

The user's config is the one torchtune v0.6.1 ships (``assets/torchtune_v0.6.1/``, as ``tune cp``
copies it): ``llama2/7B_lora_single_device`` for LoRA, ``llama2/7B_qlora_single_device`` for QLoRA,
``llama2/7B_full_low_memory`` for full fine-tuning. It runs through ``tune run`` in the default
environment (no thread or OpenMP variable set by this script) with command-line overrides that only
point it at a machine without a GPU or a hub:

- the model: a random-init 58M Llama (vocab 32000, dim 512, ffn 1376, 8 layers, 8 heads; 8 kv heads
  for MHA, 2 for GQA) saved in Hugging Face layout, the builder of the same family at that size;
- the tokenizer (a SentencePiece model trained offline) with ``max_seq_len=512``, and an alpaca-style
  JSON dataset through ``alpaca_dataset`` (``train_on_input`` as the row says);
- ``device=cpu dtype=fp32 seed=0 batch_size=4 gradient_accumulation_steps=1 max_steps_per_epoch=N``
  (``dtype=bf16``, the configs' own setting, in the ``-bf16`` rows, which run by default only on a
  CPU with bf16 matrix instructions: AVX-512-BF16 or AMX);
- full fine-tuning only: ``optimizer._component_=torch.optim.AdamW`` (the config's
  ``bitsandbytes.optim.PagedAdamW`` pages through CUDA memory).

Everything else is the config's: CEWithChunkedOutputLoss, LoRA on q/v/output projections and the
MLP (rank 8, alpha 16), activation checkpointing, fused AdamW, cosine schedule with 100 warm-up
steps, shuffled batches padded to their longest sample. The reference side
(``user_config_peft.py``) trains the same model from the same checkpoint on the very batches our
recipe builds, with the same adapters, initial ``lora_A``, optimizer, schedule and gradient
checkpointing. Each side runs in its own process; the side that runs first alternates between
repeats.

Reported per row: trained tokens per second over steps 2..N (median of repeats), the median of the
per-repeat ratios ours/peft and their range, MFU (model FLOPs of the real tokens over the matmul
peak in the row's dtype, which this script measures first), peak RSS of each process, and the loss
at steps 1, 10 and N. Model FLOPs per step, from the shapes: per real token ``2 * P`` for the
layers' linear maps plus causal attention scores (``2 * 2 * L * d`` summed over positions per layer)
and ``2 * d * vocab`` per trained token for the output; times 2 for LoRA / QLoRA (forward, and
backward to the inputs) or 3 for full fine-tuning (plus the weight gradients). Recomputation
(activation checkpointing), adapters and padding are not counted, so both sides get credit for the
same work.

Usage:
    python benchmarks/user_config_cpu.py                         # every row, 3 repeats, 20 steps
    python benchmarks/user_config_cpu.py --rows lora-mha-tio --repeats 1 --steps 8
    python benchmarks/step_profile_cpu.py                        # per-op tables of both sides, one process

The QLoRA row needs ``bitsandbytes`` (``pip install bitsandbytes``; its CPU backend runs NF4).
The table and its header (commit, command, CPU flags, load average) go to
``benchmarks/results/user_config_cpu.md`` (``--out``).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lora_cpu_assets as assets  # noqa: E402
import report  # noqa: E402

UPSTREAM = HERE / "assets" / "torchtune_v0.6.1"
CONFIGS = {"lora": "llama2_7B_lora_single_device.yaml", "qlora": "llama2_7B_qlora_single_device.yaml",
           "full": "llama2_7B_full_low_memory.yaml"}
RECIPES = {"lora": "lora_finetune_single_device", "qlora": "lora_finetune_single_device",
           "full": "full_finetune_single_device"}
# row -> (method, kv heads, train_on_input, dtype)
ROWS = {
    "lora-mha-tio": ("lora", 8, True, "fp32"), "lora-mha-notio": ("lora", 8, False, "fp32"),
    "lora-gqa-tio": ("lora", 2, True, "fp32"), "lora-gqa-notio": ("lora", 2, False, "fp32"),
    "qlora-mha-tio": ("qlora", 8, True, "fp32"), "full-mha-tio": ("full", 8, True, "fp32"),
    # the configs' own dtype; run by default only where the CPU has bf16 matrix instructions
    "lora-mha-tio-bf16": ("lora", 8, True, "bf16"), "full-mha-tio-bf16": ("full", 8, True, "bf16"),
}
BF16_ROWS = [row for row, spec in ROWS.items() if spec[3] == "bf16"]
DIMS = dict(vocab_size=32000, num_layers=8, num_heads=8, embed_dim=512, intermediate_dim=1376, max_seq_len=4096,
            norm_eps=1e-5)
# our module names -> transformers' (for the initial adapters)
HF_NAMES = {"attn.q_proj": "q_proj", "attn.k_proj": "k_proj", "attn.v_proj": "v_proj", "attn.output_proj": "o_proj",
            "mlp.w1": "gate_proj", "mlp.w2": "down_proj", "mlp.w3": "up_proj"}


def make_assets(work: Path) -> None:
    """Dataset, tokenizer and both checkpoints (skipped when already there)."""
    if not (work / "data.json").exists():
        assets.write_dataset(work / "data.json")
    if not (work / "tokenizer.model").exists():
        assets.write_tokenizer(work / "data.json", work)
    for kv in (8, 2):
        if not (work / f"base_kv{kv}" / "model.safetensors").exists():
            assets.write_checkpoint(work / f"base_kv{kv}", num_kv_heads=kv)


def overrides(method: str, kv: int, train_on_input: bool, dtype: str, work: Path, out: Path,
              steps: int) -> List[str]:
    """The command-line overrides of a row (see the module docstring for why each is there)."""
    builder = "torchtune.models.llama2.llama2" if method == "full" else "torchtune.models.llama2.lora_llama2"
    args = [f"model._component_={builder}", *(f"model.{k}={v}" for k, v in DIMS.items()), f"model.num_kv_heads={kv}",
            f"tokenizer.path={work / 'tokenizer.model'}", "tokenizer.max_seq_len=512",
            f"checkpointer.checkpoint_dir={work / f'base_kv{kv}'}", "checkpointer.checkpoint_files=[model.safetensors]",
            "dataset._component_=torchtune.datasets.alpaca_dataset", "dataset.source=json",
            f"dataset.data_files={work / 'data.json'}", "dataset.split=train", f"dataset.train_on_input={train_on_input}",
            "device=cpu", f"dtype={dtype}", "seed=0", "batch_size=4", "gradient_accumulation_steps=1",
            f"max_steps_per_epoch={steps}", f"output_dir={out}"]
    if method == "qlora":
        args.append("model.quantize_base=True")
    if method == "full":
        args.append("optimizer._component_=torch.optim.AdamW")
    return args


def load_config(method: str, args: List[str]):
    from torchtune.config import load_config as load
    from torchtune.config._parse import apply_overrides

    return apply_overrides(load(str(UPSTREAM / CONFIGS[method])), args)


def recipe_batches(cfg, steps: int) -> List[Dict[str, torch.Tensor]]:
    """The first ``steps`` batches of the recipe's own data setup (``training.setup_sft_data``)."""
    from torchtune import config, training

    tokenizer = config.instantiate(cfg.tokenizer)
    data = training.setup_sft_data(cfg, tokenizer, ignore_index=-100, seed=training.set_seed(cfg.seed))
    data.sampler.set_epoch(0)
    batches = []
    for batch in data.dataloader:
        if len(batches) == steps:
            break
        batches.append(batch)
    if len(batches) < steps:
        raise RuntimeError(f"the dataset gives only {len(batches)} batches, fewer than {steps} steps")
    return batches


def initial_lora_a(cfg) -> Dict[str, torch.Tensor]:
    """Our recipe's fresh ``lora_a`` weights under transformers' names (``layers.{i}.{proj}``)."""
    from torchtune import config, training

    training.set_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = config.instantiate(cfg.model, quantize_base=False)  # same adapters, no NF4 on meta
    out = {}
    for name, weight in training.get_initial_adapter_state_dict(model).items():
        if name.endswith(".lora_a.weight"):
            _, layer, module = name[: -len(".lora_a.weight")].split(".", 2)
            out[f"layers.{layer}.{HF_NAMES[module]}"] = weight
    return out


def model_flops(batch: Dict[str, torch.Tensor], kv: int, method: str) -> float:
    """Model FLOPs of one training step on ``batch`` (see the module docstring)."""
    d, L, f, v = DIMS["embed_dim"], DIMS["num_layers"], DIMS["intermediate_dim"], DIMS["vocab_size"]
    head_dim = d // DIMS["num_heads"]
    linear_params = L * (2 * d * d + 2 * d * kv * head_dim + 3 * d * f)
    lengths = (batch["labels"] != -100).cumsum(1).argmax(1) + 1  # up to the last labelled position
    real = float(lengths.sum())
    attention = float(sum(2 * 2 * d * L * n * (n + 1) / 2 for n in lengths.tolist()))
    trained = float((batch["labels"][:, 1:] != -100).sum())
    forward = 2 * linear_params * real + attention + 2 * d * v * trained
    return forward * (3 if method == "full" else 2)


def matmul_peak_gflops(dtype: torch.dtype = torch.float32) -> float:
    """Best of 5 timed 2048^3 matmuls in ``dtype`` at the default thread count."""
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048**3 / best / 1e9


def _tune() -> str:
    beside = Path(sys.executable).with_name("tune")
    return str(beside) if beside.exists() else (shutil.which("tune") or "tune")


def _run(cmd: List[str], log: Path, env: Optional[Dict[str, str]] = None) -> Tuple[float, float]:
    """Run ``cmd`` in the caller's environment (plus ``env``); (wall seconds, peak RSS MiB of that process)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=HERE.parent,
                                env=dict(os.environ, **(env or {})))
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def run_ours(run_dir: Path, method: str, args: List[str], tokens: List[int],
             env: Optional[Dict[str, str]] = None) -> Dict:
    import re

    cmd = [_tune(), "run", RECIPES[method], "--config", str(UPSTREAM / CONFIGS[method]), *args]
    wall, rss = _run(cmd, run_dir / "ours.log", env)
    losses, tps = {}, {}
    for path in sorted((run_dir / "out" / "logs").glob("*.txt")):
        for line in path.read_text().splitlines():
            m = re.match(r"Step (\d+) \| (.*)", line)
            if m and "loss:" in m.group(2):
                fields = dict(kv.split(":", 1) for kv in m.group(2).split())
                losses[int(m.group(1))] = float(fields["loss"])
                tps[int(m.group(1))] = float(fields["tokens_per_second_per_gpu"])
    steps = sorted(losses)
    return {"losses": [losses[s] for s in steps], "step_times": [n / tps[s] for n, s in zip(tokens, steps)],
            "tokens": tokens, "rss_mib": rss, "wall_s": wall}


def run_peft(run_dir: Path, cfg, method: str, work: Path, kv: int, dtype: str, steps: int) -> Dict:
    opt = {k: v for k, v in cfg.optimizer.items() if k != "_component_"}
    spec = dict(method=method, dtype=dtype, checkpoint=str(work / f"base_kv{kv}"), batches=str(work / "batches.pt"),
                init_lora_a=str(work / f"lora_a_kv{kv}.pt"), rank=cfg.model.get("lora_rank", 0),
                alpha=cfg.model.get("lora_alpha", 0), targets=["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                             "down_proj"],
                activation_checkpointing=bool(cfg.enable_activation_checkpointing), optimizer=opt,
                warmup=cfg.lr_scheduler.num_warmup_steps, total_steps=steps, result=str(run_dir / "peft.json"))
    (run_dir / "peft_spec.json").write_text(json.dumps(spec))
    wall, rss = _run([sys.executable, str(HERE / "user_config_peft.py"), str(run_dir / "peft_spec.json")],
                     run_dir / "peft.log")
    return dict(json.loads((run_dir / "peft.json").read_text()), rss_mib=rss, wall_s=wall)


def tokens_per_s(result: Dict) -> float:
    return sum(result["tokens"][1:]) / sum(result["step_times"][1:])


def mfu(result: Dict, flops: List[float], peak: float) -> float:
    return sum(flops[1:]) / sum(result["step_times"][1:]) / (peak * 1e9)


def table(results: Dict[str, List[Tuple[Dict, Dict]]], flops: Dict[str, List[float]], peaks: Dict[str, float],
          steps: int) -> str:
    mid = min(10, steps)
    lines = [f"| row | ours tok/s | peft tok/s | ours/peft (range) | MFU ours / peft | peak RSS MiB ours / peft "
             f"| loss@1 ours / peft | loss@{mid} ours / peft | loss@{steps} ours / peft |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row, pairs in results.items():
        ratios = [tokens_per_s(o) / tokens_per_s(p) for o, p in pairs]
        peak = peaks[ROWS[row][3]]
        o_mfu = statistics.median(mfu(o, flops[row], peak) for o, _ in pairs)
        p_mfu = statistics.median(mfu(p, flops[row], peak) for _, p in pairs)
        o0, p0 = pairs[0]
        losses = " | ".join(f"{o0['losses'][s - 1]:.4f} / {p0['losses'][s - 1]:.4f}" for s in (1, mid, steps))
        lines.append(
            f"| {row} | {statistics.median(tokens_per_s(o) for o, _ in pairs):.0f} "
            f"| {statistics.median(tokens_per_s(p) for _, p in pairs):.0f} "
            f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | {o_mfu:.0%} / {p_mfu:.0%} "
            f"| {statistics.median(o['rss_mib'] for o, _ in pairs):.0f} / "
            f"{statistics.median(p['rss_mib'] for _, p in pairs):.0f} | {losses} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=None,
                        help=f"comma-separated, of {list(ROWS)}; default: all, the bf16 ones only where the CPU "
                             "has bf16 matrix instructions (AVX-512-BF16 or AMX)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--work-dir", type=Path, default=None, help="assets and runs (reused); a temp dir by default")
    parser.add_argument("--out", type=Path, default=None, help="result file (default results/user_config_cpu.md)")
    args = parser.parse_args()
    from torchtune.training.precision import cpu_has_native_bf16

    native_bf16 = cpu_has_native_bf16()
    rows = args.rows.split(",") if args.rows else [r for r in ROWS if native_bf16 or r not in BF16_ROWS]
    if unknown := [r for r in rows if r not in ROWS]:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    if args.steps < 2:
        parser.error("--steps must be at least 2 (tokens/s is measured over steps 2..N)")

    started = report.start()
    t_start = time.perf_counter()
    peaks = {"fp32": matmul_peak_gflops()}
    if any(r in BF16_ROWS for r in rows):
        peaks["bf16"] = matmul_peak_gflops(torch.bfloat16)
    peaks_text = ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="user_config_cpu_"))
    work.mkdir(parents=True, exist_ok=True)
    make_assets(work)
    print(f"work dir {work}; matmul peak {peaks_text} GFLOP/s; "
          f"thread env: {({k: v for k, v in os.environ.items() if 'THREAD' in k or k.startswith('OMP_')}) or 'none'}",
          flush=True)

    results: Dict[str, List[Tuple[Dict, Dict]]] = {r: [] for r in rows}
    flops: Dict[str, List[float]] = {}
    for rep in range(args.repeats):
        for row in rows:
            method, kv, tio, dtype = ROWS[row]
            run_dir = work / "runs" / f"{row}_r{rep}"
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            row_args = overrides(method, kv, tio, dtype, work, run_dir / "out", args.steps)
            cfg = load_config(method, row_args)
            batches = recipe_batches(cfg, args.steps)
            torch.save(batches, work / "batches.pt")
            if method != "full":
                torch.save(initial_lora_a(cfg), work / f"lora_a_kv{kv}.pt")
            tokens = [int((b["labels"][:, 1:] != -100).sum()) for b in batches]
            flops[row] = [model_flops(b, kv, method) for b in batches]
            sides = {"ours": lambda: run_ours(run_dir, method, row_args, tokens),
                     "peft": lambda: run_peft(run_dir, cfg, method, work, kv, dtype, args.steps)}
            order = ["ours", "peft"] if rep % 2 == 0 else ["peft", "ours"]
            done = {side: sides[side]() for side in order}
            results[row].append((done["ours"], done["peft"]))
            o, p = done["ours"], done["peft"]
            padded = sum(b["tokens"].numel() for b in batches)
            real = sum(float(((b["labels"] != -100).cumsum(1).argmax(1) + 1).sum()) for b in batches)
            print(f"[{row} rep {rep}] ours {tokens_per_s(o):.0f} tok/s ({o['rss_mib']:.0f} MiB, {o['wall_s']:.0f} s) "
                  f"| peft {tokens_per_s(p):.0f} tok/s ({p['rss_mib']:.0f} MiB, {p['wall_s']:.0f} s) | ratio "
                  f"{tokens_per_s(o) / tokens_per_s(p):.2f} | loss@1 {o['losses'][0]:.4f} / {p['losses'][0]:.4f} "
                  f"| padding {1 - real / padded:.0%} of the batches' tokens", flush=True)

    notes = [f"{args.steps} steps per run; median of {args.repeats} repeat(s), the side that runs first alternating; "
             f"matmul peak measured here (GFLOP/s): {peaks_text}; "
             f"bf16 matrix instructions: {'yes' if native_bf16 else 'no (bf16 rows left out)'}; "
             f"total {time.perf_counter() - t_start:.0f} s.",
             "Per-repeat ratios ours/peft: " + "; ".join(
                 f"{r} " + ", ".join(f"{tokens_per_s(o) / tokens_per_s(p):.2f}" for o, p in pairs)
                 for r, pairs in results.items()) + "."]
    report.write_report(args.out or report.default_path(__file__),
                        "The user's unchanged torchtune config on CPU, ours vs transformers + peft (user_config_cpu.py)",
                        table(results, flops, peaks, args.steps), started, notes)


if __name__ == "__main__":
    main()
