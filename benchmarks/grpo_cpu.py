"""GRPO throughput on CPU: rollout tokens/s and update-step tokens/s of the recipe's own pieces.

One GRPO step of ``grpo_finetune_single_device`` is a rollout (``torchtune.rlhf.generate_rollouts``:
sampling ``group_size`` answers per prompt with the KV cache, then one policy and one reference
forward over every sequence to score log-probs, then the reward functions) and an update
(``torchtune.rlhf.grpo_update``: forward + backward over every sequence, optimizer step). This
times both on a random-init LoRA Llama (default: vocab 32000, dim 512, 8 layers, ffn 1376, about
58M parameters; q/v LoRA rank 8, as in FIELD_NOTES), with ``min_new_tokens``-style fixed-length
answers (no stop token) so every step generates the same number of tokens.

- rollout tokens/s = generated answer tokens / rollout time (generation + scoring + rewards);
- update tokens/s = sequence tokens (prompt + answer, all positions the forward processes) / update time.

Each figure is the median over ``--steps`` steps after one warm-up step. The table, with a header
naming the commit, command, CPU and load average, goes to ``--out``
(``benchmarks/results/grpo_cpu.md`` by default).

Usage:
    python benchmarks/grpo_cpu.py                         # 4 prompts x group 4, 64 prompt + 64 new tokens
    python benchmarks/grpo_cpu.py --threads 1 --steps 3   # steadier on a busy machine
    python benchmarks/grpo_cpu.py --layers 2 --dim 64 --vocab 512 --steps 2   # seconds, for a smoke run
"""

import argparse
import statistics
import time

import torch

import report
from torchtune import rlhf
from torchtune.models.llama2 import lora_llama2
from torchtune.modules.peft import disable_adapter, get_adapter_params, set_trainable_params
from torchtune.rlhf.loss import GRPOLoss
from torchtune.training import optimizer_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--ffn", type=int, default=1376)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--accumulation", type=int, default=2, help="micro-batches per optimizer step")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = report.start()

    torch.manual_seed(0)
    heads = max(1, args.dim // 64)
    model = lora_llama2(["q_proj", "v_proj"], lora_rank=8, lora_alpha=16, vocab_size=args.vocab,
                        num_layers=args.layers, num_heads=heads, num_kv_heads=heads, embed_dim=args.dim,
                        intermediate_dim=args.ffn, max_seq_len=args.prompt_len + args.new_tokens)
    set_trainable_params(model, get_adapter_params(model))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = GRPOLoss()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, args.vocab, (args.prompt_len,), generator=g).tolist() for _ in range(args.prompts)]
    answers = ["0"] * args.prompts
    # A cheap stand-in verifiable reward with some spread, so advantages are not all zero.
    rewards = [lambda text, answer: float(len(text) % 2)]

    rollout_rates, update_rates = [], []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        out = rlhf.generate_rollouts(
            model, prompts, answers, group_size=args.group_size, max_generated_tokens=args.new_tokens, pad_id=0,
            stop_tokens=None, decode=lambda ids: " " * len(set(ids)), reward_functions=rewards,
            reference_context=lambda: disable_adapter(model), temperature=1.0)
        t1 = time.perf_counter()
        rollout = out["rollout"]
        rlhf.grpo_update(model, loss_fn, optimizer, rollout, gradient_accumulation_steps=args.accumulation,
                         optimizer_step=lambda: optimizer_step(optimizer, model, 1.0))
        t2 = time.perf_counter()
        if step == 0:
            continue  # warm-up
        rollout_rates.append(out["num_generated_tokens"] / (t1 - t0))
        update_rates.append(rollout.query_responses.numel() / (t2 - t1))

    n = args.prompts * args.group_size
    params = sum(p.numel() for p in model.parameters())
    table = "\n".join([
        "| model | sequences (prompts x group) | prompt + new tokens | rollout tokens/s | update tokens/s |",
        "| --- | --- | --- | --- | --- |",
        f"| LoRA Llama {params / 1e6:.1f}M (dim {args.dim}, {args.layers} layers, vocab {args.vocab}), fp32 | "
        f"{n} ({args.prompts} x {args.group_size}) | {args.prompt_len} + {args.new_tokens} | "
        f"{statistics.median(rollout_rates):.0f} | {statistics.median(update_rates):.0f} |",
    ])
    notes = [
        f"Median of {args.steps} steps after one warm-up step; threads: {torch.get_num_threads()}.",
        "rollout tokens/s: generated answer tokens / (generation with KV cache + policy and reference scoring "
        "forwards + rewards).",
        f"update tokens/s: all sequence positions (n x (prompt + answer)) / (forward + backward in "
        f"{args.accumulation} micro-batches + AdamW step).",
        "per-step rollout: " + ", ".join(f"{r:.0f}" for r in rollout_rates)
        + "; update: " + ", ".join(f"{r:.0f}" for r in update_rates),
    ]
    print(table)
    report.write_report(args.out or report.default_path(__file__), "GRPO rollout and update throughput on CPU",
                        table, started, notes=notes)


if __name__ == "__main__":
    main()
