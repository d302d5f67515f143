"""LoRA fine-tuning speed on CPU: our ``lora_finetune_single_device`` recipe against transformers + peft.

Everything is generated offline and deterministically into a work folder:
- a random-init Llama in Hugging Face layout (vocab 32000, dim 512, ffn 1376, 8 layers, 8 heads),
  once with 8 kv heads (MHA) and once with 2 (GQA);
- a SentencePiece tokenizer and an alpaca-style JSON dataset (mean sample about 120 tokens).

For every variant (fp32/bf16 x MHA/GQA) and repeat, the two sides then run one after the other,
each in its own process, on identical batches (built by the recipe's own data setup and handed to
the peft loop: same samples, order and padding; batch 4, max_seq_len 512, ``group_by_length: True``,
a documented recipe option that batches samples of similar length) with the same LoRA (q_proj,
v_proj, rank 8, alpha 16), initial adapter, optimizer (fused AdamW, lr 3e-4, weight decay 0.01) and
cosine schedule (no warmup):
1. ours: ``tune run lora_finetune_single_device --config <work>/ours_<variant>.yaml``;
2. peft: ``benchmarks/lora_cpu_peft.py``, a plain PyTorch loop on transformers + peft.

Tokens/s counts the trained (non-ignored, shifted) tokens of steps 2..N over the wall time of
those steps: the recipe's per-step ``tokens_per_second_per_gpu`` (DiskLogger) gives its step
times, the peft loop times its steps itself. Peak RSS is each process's own (``os.wait4``).
The side that runs first alternates between repeats; the ratio is the median of the per-repeat
ratios ours/peft. The table, with a header naming the commit, command and CPU, is written to
``--out`` (``benchmarks/results/lora_cpu.md`` by default).

Both sides run with the same environment, by default with ``OMP_WAIT_POLICY=PASSIVE``: on a
shared machine, OpenMP's default spin-waiting lets one descheduled thread stall every parallel
region for a scheduler slice (10-100x on small ops), which turns timings into noise for both
sides. ``--omp-wait-policy inherit`` keeps the caller's setting.

Usage:
    python benchmarks/lora_cpu.py                                   # 4 variants x 3 repeats, 20 steps
    python benchmarks/lora_cpu.py --variants fp32-mha,fp32-gqa      # a CPU without bf16 instructions
    python benchmarks/lora_cpu.py --variants bf16-mha --repeats 1 --steps 8
    python benchmarks/lora_cpu.py --ours-override loss.num_output_chunks=4   # try a recipe option
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
from functools import partial
from pathlib import Path
from typing import Dict, List, Tuple

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import lora_cpu_assets as assets  # noqa: E402
import report  # noqa: E402

VARIANTS = {"fp32-mha": ("fp32", 8), "fp32-gqa": ("fp32", 2), "bf16-mha": ("bf16", 8), "bf16-gqa": ("bf16", 2)}
TRAIN = dict(batch_size=4, max_seq_len=512, rank=8, alpha=16, lr=3e-4, weight_decay=0.01, warmup=0, seed=0,
             target_modules=["q_proj", "v_proj"])


def our_config(work: Path, dtype: str, kv_heads: int, steps: int, out_dir: Path) -> Dict:
    """The recipe config of one variant (written next to the run as YAML)."""
    d = assets.MODEL_DIMS
    return {
        "output_dir": str(out_dir),
        "model": {
            "_component_": "torchtune.models.llama2.lora_llama2",
            "lora_attn_modules": TRAIN["target_modules"], "apply_lora_to_mlp": False, "apply_lora_to_output": False,
            "vocab_size": d["vocab_size"], "num_layers": d["num_hidden_layers"], "num_heads": d["num_attention_heads"],
            "num_kv_heads": kv_heads, "embed_dim": d["hidden_size"], "intermediate_dim": d["intermediate_size"],
            "max_seq_len": TRAIN["max_seq_len"], "norm_eps": d["rms_norm_eps"],
            "lora_rank": TRAIN["rank"], "lora_alpha": TRAIN["alpha"], "lora_dropout": 0.0,
        },
        "tokenizer": {"_component_": "torchtune.models.llama2.llama2_tokenizer",
                      "path": str(work / "tokenizer.model"), "max_seq_len": TRAIN["max_seq_len"]},
        "checkpointer": {"_component_": "torchtune.training.FullModelHFCheckpointer",
                         "checkpoint_dir": str(work / f"base_kv{kv_heads}"), "checkpoint_files": ["model.safetensors"],
                         "recipe_checkpoint": None, "output_dir": "${output_dir}", "model_type": "LLAMA2"},
        "resume_from_checkpoint": False,
        "save_adapter_weights_only": True,
        "dataset": {"_component_": "torchtune.datasets.alpaca_dataset", "source": "json",
                    "data_files": str(work / "data.json"), "train_on_input": False, "packed": False},
        "seed": TRAIN["seed"], "shuffle": True, "group_by_length": True, "batch_size": TRAIN["batch_size"],
        "optimizer": {"_component_": "torch.optim.AdamW", "fused": True, "lr": TRAIN["lr"],
                      "weight_decay": TRAIN["weight_decay"]},
        "lr_scheduler": {"_component_": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
                         "num_warmup_steps": TRAIN["warmup"]},
        "loss": {"_component_": "torchtune.modules.loss.LinearCrossEntropyLoss", "chunk_size": 256},
        "epochs": 1, "max_steps_per_epoch": steps, "gradient_accumulation_steps": 1, "clip_grad_norm": None,
        "compile": False, "device": "cpu", "dtype": dtype,
        "enable_activation_checkpointing": False, "enable_activation_offloading": False,
        "metric_logger": {"_component_": "torchtune.training.metric_logging.DiskLogger",
                          "log_dir": "${output_dir}/logs", "filename": "log.txt"},
        "log_every_n_steps": 1, "log_peak_memory_stats": False,
    }


def make_assets(work: Path) -> None:
    """Dataset, tokenizer and both checkpoints (skipped when already there)."""
    if not (work / "data.json").exists():
        assets.write_dataset(work / "data.json")
    if not (work / "tokenizer.model").exists():
        assets.write_tokenizer(work / "data.json", work)
    for kv in sorted({kv for _, kv in VARIANTS.values()}):
        if not (work / f"base_kv{kv}" / "model.safetensors").exists():
            assets.write_checkpoint(work / f"base_kv{kv}", num_kv_heads=kv)


def make_batches(cfg: Dict, steps: int) -> List[Dict[str, torch.Tensor]]:
    """The first ``steps`` batches the recipe trains on, built from the same public pieces as its data setup.

    Same dataset and tokenizer (from the config), ``training.LengthGroupedSampler`` seeded with the
    config's seed, ``padded_collate_sft`` with the tokenizer's pad id and the loss's ignore index,
    ``drop_last=True``. Both sides' step-1 losses agreeing (the table's loss@1) checks that the
    recipe saw these very batches.
    """
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader

    from torchtune import config, training
    from torchtune.data import padded_collate_sft

    cfg = OmegaConf.create(cfg)
    if not cfg.get("group_by_length", False) or cfg.dataset.get("packed", False):
        raise ValueError("the benchmark's batches follow the recipe with group_by_length=True and unpacked data")
    tokenizer = config.instantiate(cfg.tokenizer)
    ignore_index = config.instantiate(cfg.loss).ignore_index
    dataset = config.instantiate(cfg.dataset, tokenizer)
    lengths = [len(dataset[i]["tokens"]) for i in range(len(dataset))]
    sampler = training.LengthGroupedSampler(dataset, lengths, cfg.batch_size, num_replicas=1, rank=0,
                                            shuffle=cfg.shuffle, seed=cfg.seed)
    sampler.set_epoch(0)
    collate = partial(padded_collate_sft, padding_idx=tokenizer.pad_id, ignore_idx=ignore_index)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate, drop_last=True)
    batches = []
    for batch in loader:
        if len(batches) == steps:
            break
        batches.append(batch)
    return batches


def initial_lora_a(cfg: Dict) -> Dict[str, torch.Tensor]:
    """The recipe's fresh ``lora_a`` weights: same seed and adapter initialisation as its setup.

    The recipe draws adapters with ``training.get_initial_adapter_state_dict`` right after seeding
    (the base weights' random init does not touch the generator), so a meta-device build suffices.
    """
    from omegaconf import OmegaConf

    from torchtune import config, training

    cfg = OmegaConf.create(cfg)
    training.set_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        with training.set_default_dtype(training.get_dtype(cfg.dtype)), torch.device("meta"):
            model = config.instantiate(cfg.model)
    adapters = training.get_initial_adapter_state_dict(model)
    return {name[: -len(".lora_a.weight")].replace("attn.", ""): weight
            for name, weight in adapters.items() if name.endswith(".lora_a.weight")}


_CHILD_ENV: Dict[str, str] = {}  # set once in main(); identical for both sides


def tune_executable() -> str:
    """The ``tune`` command of this Python environment (falls back to the one on ``PATH``)."""
    beside = Path(sys.executable).with_name("tune")
    return str(beside) if beside.exists() else (shutil.which("tune") or "tune")


def _run(cmd: List[str], log: Path) -> Tuple[float, float]:
    """Run ``cmd`` to completion; returns (wall seconds, peak RSS MiB of that process tree)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=HERE.parent,
                                env=dict(os.environ, **_CHILD_ENV))
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def _read_disk_log(path: Path) -> Tuple[List[float], List[float]]:
    losses, tps = {}, {}
    for line in path.read_text().splitlines():
        m = re.match(r"Step (\d+) \| (.*)", line)
        if m:
            fields = dict(kv.split(":", 1) for kv in m.group(2).split())
            if "loss" in fields:
                losses[int(m.group(1))] = float(fields["loss"])
                tps[int(m.group(1))] = float(fields["tokens_per_second_per_gpu"])
    steps = sorted(losses)
    return [losses[s] for s in steps], [tps[s] for s in steps]


def run_ours(run_dir: Path, cfg: Dict, tokens: List[int]) -> Dict:
    from omegaconf import OmegaConf

    cfg_path = run_dir / "ours.yaml"
    OmegaConf.save(OmegaConf.create(cfg), cfg_path)
    cmd = [tune_executable(), "run", "lora_finetune_single_device", "--config", str(cfg_path)]
    wall, rss = _run(cmd, run_dir / "ours.log")
    losses, tps = _read_disk_log(run_dir / "out" / "logs" / "log.txt")
    return {"losses": losses, "step_times": [n / r for n, r in zip(tokens, tps)], "tokens": tokens,
            "rss_mib": rss, "wall_s": wall}


def run_peft(run_dir: Path, work: Path, dtype: str, kv_heads: int, steps: int) -> Dict:
    spec = dict(TRAIN, dtype=dtype, steps=steps, checkpoint=str(work / f"base_kv{kv_heads}"),
                batches=str(work / "batches.pt"), init_lora_a=str(work / f"lora_a_{dtype}_kv{kv_heads}.pt"),
                adapter_dir=str(run_dir / "peft_adapter"), result=str(run_dir / "peft.json"))
    (run_dir / "peft_spec.json").write_text(json.dumps(spec))
    wall, rss = _run([sys.executable, str(HERE / "lora_cpu_peft.py"), str(run_dir / "peft_spec.json")],
                     run_dir / "peft.log")
    return dict(json.loads((run_dir / "peft.json").read_text()), rss_mib=rss, wall_s=wall)


def tokens_per_s(result: Dict) -> float:
    """Trained tokens per second over steps 2..N."""
    return sum(result["tokens"][1:]) / sum(result["step_times"][1:])


def _loss_at(result: Dict, step: int) -> float:
    return result["losses"][min(step, len(result["losses"])) - 1]


def table(results: Dict[str, List[Tuple[Dict, Dict]]], steps: int) -> str:
    """Markdown table of medians over repeats."""
    mid = min(10, steps)
    lines = [
        f"| variant | ours tok/s | peft tok/s | ours/peft | ours peak RSS MiB | peft peak RSS MiB "
        f"| loss@1 ours / peft | loss@{mid} ours / peft | loss@{steps} ours / peft |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, pairs in results.items():
        ours_tps = [tokens_per_s(o) for o, _ in pairs]
        peft_tps = [tokens_per_s(p) for _, p in pairs]
        ratio = statistics.median(o / p for o, p in zip(ours_tps, peft_tps))
        o0, p0 = pairs[0]
        losses = " | ".join(f"{_loss_at(o0, s):.4f} / {_loss_at(p0, s):.4f}" for s in (1, mid, steps))
        lines.append(
            f"| {variant} | {statistics.median(ours_tps):.0f} | {statistics.median(peft_tps):.0f} | {ratio:.2f} "
            f"| {statistics.median(o['rss_mib'] for o, _ in pairs):.0f} "
            f"| {statistics.median(p['rss_mib'] for _, p in pairs):.0f} | {losses} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where assets and runs go (reused if present); a fresh temp folder by default")
    parser.add_argument("--ours-override", action="append", default=[], metavar="KEY=VALUE",
                        help="change our config (repeatable); data keys change both sides' batches")
    parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE", "inherit"],
                        help="OMP_WAIT_POLICY of both sides' processes (default PASSIVE: see the module doc)")
    parser.add_argument("--allow-emulated-bf16", action="store_true",
                        help="run bf16 variants even on a CPU without bf16 instructions (very slow)")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown result file (default benchmarks/results/lora_cpu.md)")
    args = parser.parse_args()
    if args.omp_wait_policy != "inherit":
        _CHILD_ENV["OMP_WAIT_POLICY"] = args.omp_wait_policy
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    from torchtune.training import cpu_has_native_bf16

    if any(VARIANTS[v][0] == "bf16" for v in variants) and not (cpu_has_native_bf16() or args.allow_emulated_bf16):
        parser.error(
            f"this CPU ({torch.backends.cpu.get_cpu_capability()}) has no bf16 matrix instructions (AVX-512-BF16 "
            "or AMX): bf16 matmuls are emulated, about 100x slower than fp32, for both sides. Run the fp32 "
            "variants (--variants fp32-mha,fp32-gqa), or pass --allow-emulated-bf16 to time them anyway"
        )
    if args.steps < 2:
        parser.error("--steps must be at least 2 (tokens/s is measured over steps 2..N)")

    started = report.start()
    t_start = time.perf_counter()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="lora_cpu_"))
    work.mkdir(parents=True, exist_ok=True)
    make_assets(work)
    cfgs = {}
    from omegaconf import OmegaConf

    for variant in variants:
        dtype, kv = VARIANTS[variant]
        # Overrides go into the config itself, so the peft side gets the batches they lead to.
        cfg = OmegaConf.merge(our_config(work, dtype, kv, args.steps, out_dir=Path(".")),
                              OmegaConf.from_dotlist(args.ours_override))
        cfgs[variant] = OmegaConf.to_container(cfg)
        torch.save(initial_lora_a(cfgs[variant]), work / f"lora_a_{dtype}_kv{kv}.pt")
    batches = make_batches(cfgs[variants[0]], args.steps)
    if len(batches) < args.steps:
        raise RuntimeError(f"the dataset gives only {len(batches)} batches, fewer than --steps={args.steps}")
    torch.save(batches, work / "batches.pt")
    tokens = [int((b["labels"][:, 1:] != -100).sum()) for b in batches]
    seq_lens = [b["tokens"].shape[1] for b in batches]
    print(f"work dir {work}; assets ready in {time.perf_counter() - t_start:.0f} s; "
          f"{sum(tokens)} trained tokens in {args.steps} batches of {TRAIN['batch_size']} "
          f"(padded lengths {min(seq_lens)}..{max(seq_lens)}, mean {statistics.mean(seq_lens):.0f})", flush=True)

    results: Dict[str, List[Tuple[Dict, Dict]]] = {v: [] for v in variants}
    for rep in range(args.repeats):
        for variant in variants:
            dtype, kv = VARIANTS[variant]
            run_dir = work / "runs" / f"{variant}_r{rep}"
            shutil.rmtree(run_dir, ignore_errors=True)  # a reused work dir must not mix old logs in
            run_dir.mkdir(parents=True)
            cfg = dict(cfgs[variant], output_dir=str(run_dir / "out"))
            sides = {"ours": lambda: run_ours(run_dir, cfg, tokens),
                     "peft": lambda: run_peft(run_dir, work, dtype, kv, args.steps)}
            order = ["ours", "peft"] if rep % 2 == 0 else ["peft", "ours"]
            done = {side: sides[side]() for side in order}
            ours, peft = done["ours"], done["peft"]
            results[variant].append((ours, peft))
            print(f"[{variant} rep {rep}] ours {tokens_per_s(ours):.0f} tok/s ({ours['rss_mib']:.0f} MiB, "
                  f"{ours['wall_s']:.0f} s) | peft {tokens_per_s(peft):.0f} tok/s ({peft['rss_mib']:.0f} MiB, "
                  f"{peft['wall_s']:.0f} s) | ratio {tokens_per_s(ours) / tokens_per_s(peft):.2f} | "
                  f"loss@1 {ours['losses'][0]:.4f} / {peft['losses'][0]:.4f}", flush=True)

    ratios = {v: ", ".join(f"{tokens_per_s(o) / tokens_per_s(p):.2f}" for o, p in pairs)
              for v, pairs in results.items()}
    notes = [f"Both sides' processes ran with OMP_WAIT_POLICY="
             f"{_CHILD_ENV.get('OMP_WAIT_POLICY', os.environ.get('OMP_WAIT_POLICY', 'unset'))}; {args.steps} steps; "
             f"median of {args.repeats} repeat(s); total {time.perf_counter() - t_start:.0f} s.",
             "Per-repeat ratios ours/peft: " + "; ".join(f"{v} {r}" for v, r in ratios.items()) + "."]
    report.write_report(args.out or report.default_path(__file__), "LoRA on CPU, ours vs transformers + peft "
                        "(lora_cpu.py)", table(results, args.steps), started, notes)


if __name__ == "__main__":
    main()
