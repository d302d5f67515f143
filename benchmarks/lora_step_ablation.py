"""Ablation of the CPU LoRA training-step optimisations, one change at a time, in one process.

Builds ``torchtune.models.llama2.lora_llama2`` from a fixed seed (random init; defaults: vocab
32000, dim 512, ffn 1376, 8 layers, 8 heads, LoRA rank 8 / alpha 16 on q_proj and v_proj), in the
training dtype like the recipe (``training.set_default_dtype``, adapters included), freezes all
but the adapters, and times full training steps exactly as ``lora_finetune_single_device`` runs
them: forward, summed loss on shifted labels, backward, gradients divided by the trained tokens
(``GradientAccumulator``), fused AdamW step, ``zero_grad(set_to_none=True)``.

Batches are synthetic and identical for every variant: batch 4, lengths drawn from a seeded
generator (uniform 40..200, mean ~120), right-padded to the longest of the batch, labels -100 on
the first 40% of each sample (the prompt) and on padding.

Variants (each puts ONE change back to its code before commit aca8960; ``none`` puts back all four):
    all               the working tree: matmul-form SDPA, fused LinearCrossEntropyLoss(chunk_size=--chunk-size,
                      256 by default), complex RoPE, addmm LoRA forward
    no_matmul_sdpa    attention calls torch's F.scaled_dot_product_attention directly (the matmul form only
                      ever runs in bf16, so in fp32 this variant changes nothing)
    chunked_ce_loss   CEWithChunkedOutputLoss(8) + model.set_num_output_chunks(8) (full logits, 8 chunks)
    old_rope          the old RotaryPositionalEmbeddings.forward (stacked cos/sin element-wise ops)
    old_lora_forward  the old LoRALinear.forward (out + scaling * B(A(x)))
    none              all four of the above at once
(The ``.contiguous()`` on output chunks in TransformerDecoder is not switched off anywhere: it only
matters for ``chunked_ce_loss``/``none``, which therefore use the working tree's chunking.)

Every variant starts from the same seed, weights, adapters and batches; its first-step loss is
printed (``loss@1``) and must agree across variants up to dtype rounding. Variants run in a rotated
order in each of ``--repeats`` rounds; a variant's reported figure is its best (lowest) per-round
median step time, and the spread (max/min of its per-round medians) shows how noisy the machine
was. ``tok/s`` = mean trained tokens per timed step / that median step time. The table and its
header (commit, command, CPU, torch, threads) are written to ``--out``
(``benchmarks/results/lora_step_ablation.md`` by default).

Usage:
    python benchmarks/lora_step_ablation.py                      # bf16 where the CPU has bf16 instructions, else fp32
    python benchmarks/lora_step_ablation.py --dtype fp32 --kv-heads 2 --steps 20 --repeats 3 --variants all,none
    python benchmarks/lora_step_ablation.py --dtype fp32 --chunk-size 128     # the fused loss in 128-row chunks
    python benchmarks/lora_step_ablation.py --dtype bf16 --threads 4 --profile no_matmul_sdpa  # profile only
On a shared machine, ``OMP_WAIT_POLICY=PASSIVE python ...`` avoids spin-wait stalls (see lora_cpu.py).
"""

import argparse
import contextlib
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

import torchtune.modules.attention as attention
from torchtune import training
from torchtune.models.llama2 import lora_llama2
from torchtune.modules.loss import CEWithChunkedOutputLoss, LinearCrossEntropyLoss
from torchtune.modules.peft import LoRALinear, get_adapter_params, set_trainable_params
from torchtune.modules.position_embeddings import RotaryPositionalEmbeddings

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  (benchmarks/report.py)

IGNORE = -100
CHANGES = ("sdpa", "loss", "rope", "lora")
VARIANTS: Dict[str, FrozenSet[str]] = {  # variant -> changes switched off
    "all": frozenset(),
    "no_matmul_sdpa": frozenset({"sdpa"}),
    "chunked_ce_loss": frozenset({"loss"}),
    "old_rope": frozenset({"rope"}),
    "old_lora_forward": frozenset({"lora"}),
    "none": frozenset(CHANGES),
}


# ------------------------------------------ implementations before the CPU LoRA speed commit
def old_rope_forward(
    self: RotaryPositionalEmbeddings, x: torch.Tensor, *, input_pos: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``git show aca8960^:torchtune/modules/position_embeddings.py``, RotaryPositionalEmbeddings.forward."""
    b, s, n_h, h_d = x.shape
    if input_pos is None:
        if s > self.max_seq_len:
            raise ValueError(f"seq_len ({s}) exceeds the RoPE max_seq_len ({self.max_seq_len})")
        rope = self.cache[:s].view(1, s, 1, h_d // 2, 2)
    else:
        rope = self.cache[input_pos].view(-1, s, 1, h_d // 2, 2)
    cos, sin = rope[..., 0], rope[..., 1]
    x_pairs = x.float().view(b, s, n_h, h_d // 2, 2)
    x0, x1 = x_pairs[..., 0], x_pairs[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], dim=-1)
    return out.flatten(3).type_as(x)


def old_lora_forward(self: LoRALinear, x: torch.Tensor) -> torch.Tensor:
    """``git show aca8960^:torchtune/modules/peft/lora.py``, LoRALinear.forward (unquantized base)."""
    out = F.linear(x, self.weight, self.bias)
    if self.disabled:
        return out
    return out + self.scaling * self.lora_b(self.lora_a(self.dropout(x)))


def torch_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, attn_mask: Optional[torch.Tensor] = None,
               dropout_p: float = 0.0, is_causal: bool = False, enable_gqa: bool = False) -> torch.Tensor:
    """PyTorch's fused attention, called as ``MultiHeadAttention`` calls ours (before the matmul form)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                                          enable_gqa=enable_gqa)


@contextlib.contextmanager
def switched_off(changes: FrozenSet[str]) -> Iterator[None]:
    """Monkeypatch the given in-process changes back to the old code; restore on exit. ("loss" is not a
    patch: it selects the loss in ``build``.)"""
    saved = (attention.scaled_dot_product_attention, RotaryPositionalEmbeddings.forward, LoRALinear.forward)
    try:
        if "sdpa" in changes:
            attention.scaled_dot_product_attention = torch_sdpa  # looked up at every call
        if "rope" in changes:
            RotaryPositionalEmbeddings.forward = old_rope_forward
        if "lora" in changes:
            LoRALinear.forward = old_lora_forward
        yield
    finally:
        attention.scaled_dot_product_attention, RotaryPositionalEmbeddings.forward, LoRALinear.forward = saved


def make_batches(n: int, vocab: int, batch_size: int = 4, seed: int = 0) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """``n`` (tokens, shifted labels) batches, right-padded (pad id 0) to each batch's longest sample."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        lengths = torch.randint(40, 201, (batch_size,), generator=g).tolist()
        s = max(lengths)
        tokens = torch.zeros(batch_size, s, dtype=torch.long)
        labels = torch.full((batch_size, s), IGNORE, dtype=torch.long)
        for i, n_tok in enumerate(lengths):
            sample = torch.randint(1, vocab, (n_tok,), generator=g)
            tokens[i, :n_tok] = sample
            prompt = int(0.4 * n_tok)
            labels[i, prompt:n_tok] = sample[prompt:]
        batches.append((tokens, training.shift_labels(labels, IGNORE)))  # as the recipe's _loss_step
    return batches


def build(args: argparse.Namespace, chunked_loss: bool) -> Tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
    """Model, optimizer and loss wired like the recipe; identical weights for every call."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    torch.manual_seed(args.seed)
    with training.set_default_dtype(dtype):  # parameters (adapters included) born in `dtype`
        model = lora_llama2(
            ["q_proj", "v_proj"], vocab_size=args.vocab, num_layers=args.layers, num_heads=args.heads,
            num_kv_heads=args.kv_heads, embed_dim=args.dim, intermediate_dim=args.ffn, max_seq_len=512,
            lora_rank=8, lora_alpha=16,
        )
    set_trainable_params(model, get_adapter_params(model))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=3e-4, weight_decay=0.01, fused=True)
    if chunked_loss:
        loss_fn: nn.Module = CEWithChunkedOutputLoss(num_output_chunks=8)
        model.set_num_output_chunks(loss_fn.num_output_chunks)  # model returns 8 logits chunks
    else:
        loss_fn = LinearCrossEntropyLoss(chunk_size=args.chunk_size)
        loss_fn.set_model_output(model)  # model returns hidden states, loss projects
    model.train()
    return model, optimizer, loss_fn


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module,
               batch: Tuple[torch.Tensor, torch.Tensor]) -> float:
    """One optimizer step as in lora_finetune_single_device.train (gradient_accumulation_steps=1)."""
    tokens, labels = batch
    loss = loss_fn(model(tokens), labels, reduction="sum")
    loss.backward()
    acc = training.GradientAccumulator(1)
    acc.micro_step(loss.detach(), training.count_trained_tokens(labels, IGNORE))
    mean_loss, _ = acc.finish(model.parameters())  # grads /= trained tokens (one host sync, like the recipe)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return mean_loss


def run_variant(args: argparse.Namespace, name: str, batches: List[Tuple[torch.Tensor, torch.Tensor]],
                warmup: int = 2) -> Tuple[float, float]:
    """(first-step loss, median timed step seconds) of one variant, from a fresh model."""
    off = VARIANTS[name]
    with switched_off(off):
        model, optimizer, loss_fn = build(args, chunked_loss="loss" in off)
        first_loss = train_step(model, optimizer, loss_fn, batches[0])
        for batch in batches[1:warmup]:
            train_step(model, optimizer, loss_fn, batch)
        times = []
        for batch in batches[warmup:]:
            t0 = time.perf_counter()
            train_step(model, optimizer, loss_fn, batch)
            times.append(time.perf_counter() - t0)
    del model, optimizer, loss_fn
    gc.collect()  # free this variant's model before the next is built
    return first_loss, statistics.median(times)


def profile_variant(args: argparse.Namespace, name: str, batches: List[Tuple[torch.Tensor, torch.Tensor]]) -> str:
    """The top-15 ops by self CPU time over 3 steps of one variant, after 2 warm-up steps, as text."""
    off = VARIANTS[name]
    with switched_off(off):
        model, optimizer, loss_fn = build(args, chunked_loss="loss" in off)
        for batch in batches[:2]:  # warm-up outside the profile
            train_step(model, optimizer, loss_fn, batch)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for batch in batches[2:5]:
                train_step(model, optimizer, loss_fn, batch)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])  # model dims below default to lora_cpu.py's
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=None,
                   help="default: bf16 on a CPU with bf16 instructions (AVX-512-BF16/AMX), else fp32")
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant (after 2 warm-up steps)")
    p.add_argument("--repeats", type=int, default=2, help="rounds over all variants, rotated order; best median kept")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--profile", choices=list(VARIANTS), help="only profile 3 steps of this variant")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--chunk-size", type=int, default=256,
                   help="rows per chunk of the fused LinearCrossEntropyLoss (the recipe configs use 256)")
    p.add_argument("--out", type=Path, default=None,
                   help="Markdown result file (default benchmarks/results/lora_step_ablation.md, or "
                        "lora_step_ablation_profile_<variant>.md with --profile)")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--ffn", type=int, default=1376)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.dtype is None:
        args.dtype = "bf16" if training.cpu_has_native_bf16() else "fp32"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names or args.steps < 1 or args.repeats < 1 or args.chunk_size < 1:
        p.error(f"need known variants (unknown: {unknown}), --steps >= 1, --repeats >= 1 and --chunk-size >= 1")
    started = report.start()

    setting = (f"{args.dtype}, layers {args.layers}, dim {args.dim}, ffn {args.ffn}, heads {args.heads}/"
               f"{args.kv_heads} kv, vocab {args.vocab}, fused loss chunk {args.chunk_size}")
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {setting}")
    if args.profile:
        table = profile_variant(args, args.profile, make_batches(5, args.vocab, seed=args.seed))
        out = args.out or report.RESULTS_DIR / f"lora_step_ablation_profile_{args.profile}.md"
        report.write_report(out, f"Profile of 3 LoRA steps, variant {args.profile} (lora_step_ablation.py)",
                            f"```\n{table.rstrip()}\n```", started, [f"Setting: {setting}."])
        return

    warmup = 2
    batches = make_batches(warmup + args.steps, args.vocab, seed=args.seed)
    tokens_per_step = statistics.mean(int((lab != IGNORE).sum()) for _, lab in batches[warmup:])
    print(f"# batches: {[tuple(t.shape) for t, _ in batches]}, mean trained tokens/step {tokens_per_step:.0f}")
    medians: Dict[str, List[float]] = {name: [] for name in names}
    loss1: Dict[str, float] = {}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: no variant always runs first
        for name in order:
            loss1[name], median = run_variant(args, name, batches, warmup)
            medians[name].append(median)
            print(f"repeat {r + 1}/{args.repeats} {name:17s} median {median:.4f} s  loss@1 {loss1[name]:.5f}",
                  flush=True)

    best = {name: min(m) for name, m in medians.items()}
    ref = best.get("all")
    lines = ["| variant | median step s | tok/s | vs all | spread over repeats | loss@1 |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in names:
        ratio = f"{best[name] / ref:.2f}x" if ref else "-"  # step time relative to `all` (>1: slower)
        spread = max(medians[name]) / best[name]  # 1.00x: every round measured the same median
        lines.append(f"| {name} | {best[name]:.4f} | {tokens_per_step / best[name]:.0f} | {ratio} | "
                     f"{spread:.2f}x | {loss1[name]:.5f} |")
    notes = [f"Setting: {setting}; batch 4, mean {tokens_per_step:.0f} trained tokens per step; {args.steps} timed "
             f"steps after 2 warm-up steps, {args.repeats} rotated round(s), best per-round median kept.",
             "Per-round median step seconds: " + "; ".join(
                 f"{name} " + ", ".join(f"{m:.3f}" for m in medians[name]) for name in names) + "."]
    report.write_report(args.out or report.default_path(__file__), "LoRA step ablation (lora_step_ablation.py)",
                        "\n".join(lines), started, notes)


if __name__ == "__main__":
    main()
