"""LoRA and QLoRA on one GPU: ours against transformers + peft, bf16, packed 2048-token batches.

Random-init models of the Llama-3.2-1B and Llama-3.1-8B shapes (no download), built in bf16 on the
GPU: ours from the family's LoRA / QLoRA component builders (LoRA rank 16 on q/k/v/output and the
MLP, the fused output-projection loss our configs ship), theirs as ``LlamaForCausalLM`` with a peft
``LoraConfig`` on the same projections (QLoRA: bitsandbytes NF4 with double-quantised scales, loaded
from a checkpoint this script writes once). Both sides train on the same batches of full
2048-token rows (packed data has no padding), AdamW (fused), ``compile`` off and on (ours:
``training.compile_model`` and ``compile_loss``; theirs: ``model.compile()``). Per run: tokens/s over
``--steps`` timed steps after ``--warmup`` steps, and the peak allocated GPU memory. The two sides'
weights are different random draws, so their losses are not compared.

Usage (on a machine with one CUDA GPU; the whole default set takes about 10 minutes on an H100-class GPU):
    python benchmarks/gpu_lora.py
    python benchmarks/gpu_lora.py --models 1B --methods lora --compile off
    python benchmarks/gpu_lora.py --smoke      # tiny shapes on CPU in fp32: checks the script itself

Needs ``bitsandbytes`` for the QLoRA rows of the reference side. The table and its header go to
``benchmarks/results/gpu_lora.md`` (``--out``).
"""

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402

SHAPES = {
    "1B": dict(vocab_size=128256, num_layers=16, num_heads=32, num_kv_heads=8, embed_dim=2048, intermediate_dim=8192,
               tie_word_embeddings=True, batch_size=8),
    "8B": dict(vocab_size=128256, num_layers=32, num_heads=32, num_kv_heads=8, embed_dim=4096, intermediate_dim=14336,
               tie_word_embeddings=False, batch_size=2),
    "smoke": dict(vocab_size=512, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=128,
                  tie_word_embeddings=True, batch_size=2),
}
LORA = dict(rank=16, alpha=32)
OURS_TARGETS = ["q_proj", "k_proj", "v_proj", "output_proj"]
HF_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def ours(shape: Dict, method: str, compile: bool, device: torch.device, dtype: torch.dtype, seq_len: int) -> Callable:
    from torchtune import training
    from torchtune.models.llama3_1 import lora_llama3_1
    from torchtune.models.llama3_2 import lora_llama3_2
    from torchtune.modules.loss import LinearCrossEntropyLoss
    from torchtune.modules.peft import get_adapter_params, set_trainable_params

    dims = {k: v for k, v in shape.items() if k not in ("batch_size", "tie_word_embeddings")}
    builder = lora_llama3_2 if shape["tie_word_embeddings"] else lora_llama3_1
    with training.set_default_dtype(dtype), device:
        model = builder(OURS_TARGETS, apply_lora_to_mlp=True, max_seq_len=seq_len, lora_rank=LORA["rank"],
                        lora_alpha=LORA["alpha"], quantize_base=method == "qlora", **dims)
    set_trainable_params(model, get_adapter_params(model))
    if compile:
        training.compile_model(model, verbose=False)
    loss_fn = training.prepare_loss(LinearCrossEntropyLoss(chunk_size=1024), model, compile=compile)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                  fused=device.type == "cuda")

    def step(tokens: torch.Tensor) -> float:
        loss, n = training.sft_loss_step(model, loss_fn, {"tokens": tokens, "labels": tokens.clone()},
                                         torch.enable_grad())
        (loss / n).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return (loss / n).item()

    return step


def _hf_checkpoint(shape: Dict, dtype: torch.dtype, seq_len: int, folder: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    if not (folder / "config.json").exists():
        dims = {k: v for k, v in shape.items() if k != "batch_size"}
        config = LlamaConfig(vocab_size=dims["vocab_size"], hidden_size=dims["embed_dim"],
                             intermediate_size=dims["intermediate_dim"], num_hidden_layers=dims["num_layers"],
                             num_attention_heads=dims["num_heads"], num_key_value_heads=dims["num_kv_heads"],
                             max_position_embeddings=seq_len, rope_theta=500000.0,
                             tie_word_embeddings=dims["tie_word_embeddings"])
        with torch.device("cpu"):
            LlamaForCausalLM(config).to(dtype).save_pretrained(folder)
    return folder


def peft(shape: Dict, method: str, compile: bool, device: torch.device, dtype: torch.dtype, seq_len: int,
         checkpoint: Path) -> Callable:
    from peft import get_peft_model, LoraConfig
    from transformers import AutoModelForCausalLM

    kwargs = {}
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=dtype, device_map={"": device}, **kwargs)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=0.0,
                                             target_modules=HF_TARGETS, task_type="CAUSAL_LM"),
                           autocast_adapter_dtype=False)
    model.train()
    if compile:
        model.compile()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                  fused=device.type == "cuda")

    def step(tokens: torch.Tensor) -> float:
        out = model(input_ids=tokens, labels=tokens, use_cache=False)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss.item()

    return step


def timed(step: Callable, batches: List[torch.Tensor], warmup: int, device: torch.device) -> Dict[str, float]:
    for tokens in batches[:warmup]:
        step(tokens)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for tokens in batches[warmup:]:
        step(tokens)  # .item() inside: one sync per step on both sides
    seconds = time.perf_counter() - t0
    tokens = sum(t.numel() for t in batches[warmup:])
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"tokens_per_s": tokens / seconds, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="1B,8B")
    parser.add_argument("--methods", default="lora,qlora")
    parser.add_argument("--compile", default="off,on")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU in fp32 (checks the script)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.smoke:
        models, device, dtype, args.seq_len, args.warmup, args.steps = ["smoke"], torch.device("cpu"), torch.float32, \
            64, 1, 2
    else:
        if not torch.cuda.is_available():
            parser.error("needs a CUDA GPU (or --smoke)")
        models, device, dtype = args.models.split(","), torch.device("cuda"), torch.bfloat16
    methods, compiles = args.methods.split(","), [c == "on" for c in args.compile.split(",")]
    started = report.start()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="gpu_lora_"))
    for name in models:
        shape = SHAPES[name]
        g = torch.Generator().manual_seed(0)
        batches = [torch.randint(0, shape["vocab_size"], (shape["batch_size"], args.seq_len), generator=g).to(device)
                   for _ in range(args.warmup + args.steps)]
        checkpoint = _hf_checkpoint(shape, dtype, args.seq_len, work / name)
        for method in methods:
            for compile in compiles:
                result = {}
                for side in ("ours", "peft"):
                    step = (ours(shape, method, compile, device, dtype, args.seq_len) if side == "ours"
                            else peft(shape, method, compile, device, dtype, args.seq_len, checkpoint))
                    result[side] = timed(step, batches, args.warmup, device)
                    del step
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    torch._dynamo.reset()
                o, p = result["ours"], result["peft"]
                rows.append(f"| {name} | {method} | {'on' if compile else 'off'} | {o['tokens_per_s']:.0f} "
                            f"| {p['tokens_per_s']:.0f} | {o['tokens_per_s'] / p['tokens_per_s']:.2f} "
                            f"| {o['peak_gib']:.1f} / {p['peak_gib']:.1f} |")
                print(rows[-1], flush=True)
    table = "\n".join(["| model | method | compile | ours tok/s | peft tok/s | ours/peft | peak GiB ours / peft |",
                       "|---|---|---|---:|---:|---:|---:|", *rows])
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke run)"
    notes = [f"Device: {device_name}; {dtype}; batches of full {args.seq_len}-token rows; {args.steps} timed steps "
             f"after {args.warmup} warm-up steps; LoRA rank {LORA['rank']}, alpha {LORA['alpha']}."]
    report.write_report(args.out or report.default_path(__file__), "LoRA / QLoRA on one GPU, ours vs transformers + "
                        "peft (gpu_lora.py)", table, started, notes)


if __name__ == "__main__":
    main()
