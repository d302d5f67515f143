"""Where a training step's time goes: ours and transformers + peft on the same batches, per-op tables side by side.

One process builds both sides from the same row of ``user_config_cpu.py`` (the user's unchanged
torchtune v0.6.1 config with its tiny-model overrides): our model, loss and step as the recipe
builds them (``training.prepare_loss(..., fuse_output=True)``, ``training.sft_loss_step`` with
padding-free batches where ``training.supports_padding_free`` holds, activation checkpointing as
configured), and the peft model of ``user_config_peft.py`` with the same initial adapters. Each side
runs ``--warmup`` untimed steps, then ``--steps`` steps under ``torch.profiler``; the table lists the
ops with the most self CPU time on either side, with their call counts.

Usage:
    python benchmarks/step_profile_cpu.py --row lora-mha-tio --steps 3
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402
import user_config_cpu as ucc  # noqa: E402


def ours_step(cfg) -> Callable[[Dict[str, torch.Tensor]], float]:
    from torchtune import config, modules, training
    from torchtune.modules.peft import get_adapter_params, set_trainable_params

    training.set_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        model = config.instantiate(cfg.model)
    checkpointer = config.instantiate(cfg.checkpointer)
    model.load_state_dict(checkpointer.load_checkpoint()[training.MODEL_KEY], strict=False)
    lora = "lora" in cfg.model._component_
    if lora:
        set_trainable_params(model, get_adapter_params(model))
    if cfg.enable_activation_checkpointing:
        training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
    loss_fn = training.prepare_loss(config.instantiate(cfg.loss), model, fuse_output=True)
    optimizer = config.instantiate(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    padding_free = training.supports_padding_free(model)

    def step(batch):
        loss, n = training.sft_loss_step(model, loss_fn, dict(batch), torch.enable_grad(), padding_free=padding_free)
        (loss / n).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return (loss / n).item()

    return step


def peft_step(cfg, method: str, work: Path, kv: int) -> Callable[[Dict[str, torch.Tensor]], float]:
    from transformers import AutoModelForCausalLM

    import user_config_peft

    model = AutoModelForCausalLM.from_pretrained(str(work / f"base_kv{kv}"), dtype=torch.float32)
    model.config.use_cache = False
    if method == "lora":
        spec = dict(rank=cfg.model.lora_rank, alpha=cfg.model.lora_alpha, init_lora_a=str(work / f"lora_a_kv{kv}.pt"),
                    targets=["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = user_config_peft._peft_model(model, spec)
    if cfg.enable_activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt = {k: v for k, v in cfg.optimizer.items() if k != "_component_"}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], **opt)

    def step(batch):
        out = model(input_ids=batch["tokens"], labels=batch["labels"], use_cache=False)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss.item()

    return step


def profile(step, batches: List[Dict[str, torch.Tensor]], warmup: int):
    from torch.profiler import profile as torch_profile, ProfilerActivity

    for batch in batches[:warmup]:
        step(batch)
    t0 = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        losses = [step(batch) for batch in batches[warmup:]]
    wall = time.perf_counter() - t0
    ops = {e.key: (e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages()}
    return ops, wall, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--row", default="lora-mha-tio", choices=[r for r, spec in ucc.ROWS.items()
                                                                 if spec[0] != "qlora" and spec[3] == "fp32"])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/user_config_cpu_work"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = report.start()
    method, kv, tio, dtype = ucc.ROWS[args.row]
    args.work_dir.mkdir(parents=True, exist_ok=True)
    ucc.make_assets(args.work_dir)
    cfg = ucc.load_config(method, ucc.overrides(method, kv, tio, dtype, args.work_dir, args.work_dir / "profile_out",
                                                args.warmup + args.steps))
    batches = ucc.recipe_batches(cfg, args.warmup + args.steps)
    if method != "full":
        torch.save(ucc.initial_lora_a(cfg), args.work_dir / f"lora_a_kv{kv}.pt")
    tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches[args.warmup:])
    ours, ours_wall, ours_losses = profile(ours_step(cfg), batches, args.warmup)
    peft, peft_wall, peft_losses = profile(peft_step(cfg, method, args.work_dir, kv), batches, args.warmup)

    def share(ops, name):
        total = sum(ms for ms, _ in ops.values())
        ms, calls = ops.get(name, (0.0, 0))
        return f"{ms:.0f} ({100 * ms / total:.1f}%, {calls})" if calls else "-"

    names = sorted(set(ours) | set(peft), key=lambda n: -max(ours.get(n, (0, 0))[0], peft.get(n, (0, 0))[0]))
    lines = ["| op | ours self CPU ms (share, calls) | peft self CPU ms (share, calls) |", "|---|---:|---:|"]
    lines += [f"| `{n}` | {share(ours, n)} | {share(peft, n)} |" for n in names[: args.top]]
    lines.append(f"| **all ops** | {sum(ms for ms, _ in ours.values()):.0f} | {sum(ms for ms, _ in peft.values()):.0f} |")
    notes = [f"Row {args.row}; {args.steps} profiled steps after {args.warmup} warm-up step(s), {tokens} trained tokens. "
             f"Wall time under the profiler: ours {ours_wall:.1f} s, peft {peft_wall:.1f} s "
             f"(tokens/s {tokens / ours_wall:.0f} / {tokens / peft_wall:.0f}). Losses ours "
             f"{[round(x, 4) for x in ours_losses]}, peft {[round(x, 4) for x in peft_losses]}."]
    report.write_report(args.out or report.default_path(__file__), f"Per-op profile of one training step, ours vs "
                        f"transformers + peft (step_profile_cpu.py, {args.row})", "\n".join(lines), started, notes)


if __name__ == "__main__":
    main()
