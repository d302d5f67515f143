"""Greedy decoding speed on CPU: ``torchtune.generation.generate`` against ``transformers`` ``generate``.

Both run the same random-init ~58M-parameter Llama (vocab 32000, dim 512, 8 layers, 8 heads,
ffn 1376), saved once with ``save_pretrained`` and loaded by each side. Every (implementation,
dtype) pair runs in its own subprocess so that its peak RSS is its own.

Decode tokens/s excludes the prefill: ``b * (n - 1) / (t(n) - t(1))`` where ``t(k)`` is the best
wall time of generating ``k`` tokens. The same ratio over process CPU time ("tok/CPU-s") is
steadier on a shared machine when run with ``--threads 1`` (time spent descheduled does not
count). Wall-clock figures on a shared machine are noisy; compare within a run.

Usage:
    python benchmarks/generate_cpu.py                     # fp32 and bf16, batch 1 and 4, 128 tokens
    python benchmarks/generate_cpu.py --compile           # also torch.compile our decode step
    python benchmarks/generate_cpu.py --dtypes fp32 --batch-sizes 1 --new-tokens 32 --repeats 1
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MODEL = dict(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
             num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048,
             rms_norm_eps=1e-5, rope_theta=10000.0)


def _save_model(folder: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**MODEL, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # wider than HF's 0.02 init so greedy continuations do not collapse at once
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.05)
    model.save_pretrained(str(folder), safe_serialization=True)


def _reset_peak_rss() -> bool:
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) of this process.
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _best_times(fn: Callable[[], torch.Tensor], repeats: int) -> Tuple[float, float]:
    """Best wall time and best process CPU time of ``fn`` over ``repeats`` runs."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return wall, cpu


def _ours(folder: Path, dtype: torch.dtype, compile_step: bool, cache_len: int):
    from safetensors.torch import load_file

    from torchtune.generation import generate, generate_next_token
    from torchtune.models.convert_weights import hf_to_tune
    from torchtune.models.llama2 import llama2
    from torchtune.modules import delete_kv_caches

    model = llama2(vocab_size=MODEL["vocab_size"], num_layers=MODEL["num_hidden_layers"],
                   num_heads=MODEL["num_attention_heads"], num_kv_heads=MODEL["num_key_value_heads"],
                   embed_dim=MODEL["hidden_size"], max_seq_len=MODEL["max_position_embeddings"],
                   intermediate_dim=MODEL["intermediate_size"], norm_eps=MODEL["rms_norm_eps"])
    state = hf_to_tune(load_file(str(folder / "model.safetensors")), num_heads=MODEL["num_attention_heads"],
                       num_kv_heads=MODEL["num_key_value_heads"], dim=MODEL["hidden_size"])
    model.load_state_dict(state)
    del state
    model.to(dtype).eval()
    step = torch.compile(generate_next_token, dynamic=False) if compile_step else None

    def run(prompt: torch.Tensor, n: int) -> torch.Tensor:
        b = prompt.shape[0]
        if not model.caches_are_setup() or model.layers[0].attn.kv_cache.batch_size != b:
            if model.caches_are_setup():
                delete_kv_caches(model)
            # One static cache per batch size, long enough for the longest run.
            model.setup_caches(batch_size=b, dtype=dtype, decoder_max_seq_len=cache_len)
        tokens, _ = generate(model, prompt, max_generated_tokens=n, temperature=0,
                             custom_generate_next_token=step)
        return tokens

    return run


def _hf(folder: Path, dtype: torch.dtype, compile_step: bool, cache_len: int):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()

    def run(prompt: torch.Tensor, n: int) -> torch.Tensor:
        with torch.no_grad():
            return model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                  max_new_tokens=n, min_new_tokens=n, pad_token_id=0)

    return run


def _worker(args: argparse.Namespace) -> None:
    impl, dtype_name = args.worker
    if args.threads:
        torch.set_num_threads(args.threads)
    runner = {"ours": _ours, "hf": _hf}[impl](Path(args.model_dir), DTYPES[dtype_name], args.compile,
                                             args.prompt_len + args.new_tokens)
    for b in args.batch_sizes:
        prompt = torch.randint(3, MODEL["vocab_size"], (b, args.prompt_len),
                               generator=torch.Generator().manual_seed(b))
        reset = _reset_peak_rss()
        runner(prompt, 8)  # warm-up (and compilation when --compile)
        wall_one, cpu_one = _best_times(lambda: runner(prompt, 1), args.repeats)
        wall_full, cpu_full = _best_times(lambda: runner(prompt, args.new_tokens), args.repeats)
        decoded = b * (args.new_tokens - 1)
        tokens = runner(prompt, args.new_tokens)[:, args.prompt_len:]
        print(json.dumps({
            "impl": impl, "dtype": dtype_name, "batch": b,
            "decode_tok_s": decoded / max(wall_full - wall_one, 1e-9),
            "decode_tok_cpu_s": decoded / max(cpu_full - cpu_one, 1e-9),
            "total_s": wall_full, "prefill_s": wall_one,
            "peak_rss_mib": _peak_rss_mib(), "rss_reset": reset, "tokens": tokens.tolist(),
        }), flush=True)


def _first_mismatch(a: List[List[int]], b: List[List[int]]) -> str:
    for step in range(len(a[0])):
        if any(row_a[step] != row_b[step] for row_a, row_b in zip(a, b)):
            return f"from token {step}"
    return "all"


def _table(results: List[Dict], compiled: bool) -> str:
    by_key = {(r["impl"], r["dtype"], r["batch"]): r for r in results}
    ours_name = "ours (compiled step)" if compiled else "ours"
    lines = ["| impl | dtype | batch | decode tok/s | decode tok/CPU-s | total s | peak RSS MiB | "
             "same greedy tokens as HF |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in sorted(results, key=lambda r: (r["dtype"], r["batch"], r["impl"] != "ours")):
        other = by_key.get(("hf", r["dtype"], r["batch"]))
        same = _first_mismatch(r["tokens"], other["tokens"]) if r["impl"] == "ours" and other else ""
        name = ours_name if r["impl"] == "ours" else "transformers"
        lines.append(f"| {name} | {r['dtype']} | {r['batch']} | {r['decode_tok_s']:.1f} | "
                     f"{r['decode_tok_cpu_s']:.1f} | {r['total_s']:.2f} | {r['peak_rss_mib']:.0f} | {same} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="best-of repeats per timing")
    parser.add_argument("--compile", action="store_true", help="torch.compile our decode step")
    parser.add_argument("--impls", nargs="+", default=["ours", "hf"], choices=["ours", "hf"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (default: torch's choice); 1 is steadier on a busy machine")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)

    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, prompt {args.prompt_len} tokens, "
          f"{args.new_tokens} new tokens, greedy", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        _save_model(Path(folder))
        passthrough = ["--batch-sizes", *map(str, args.batch_sizes), "--new-tokens", str(args.new_tokens),
                       "--prompt-len", str(args.prompt_len), "--repeats", str(args.repeats)]
        if args.threads:
            passthrough += ["--threads", str(args.threads)]
        for dtype_name in args.dtypes:
            for impl in args.impls:
                cmd = [sys.executable, __file__, "--worker", impl, dtype_name, "--model-dir", folder, *passthrough]
                if args.compile and impl == "ours":
                    cmd.append("--compile")
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                for line in out.splitlines():
                    if line.startswith("{"):
                        r = json.loads(line)
                        results.append(r)
                        print(f"  {r['impl']:5s} {r['dtype']} batch {r['batch']}: "
                              f"{r['decode_tok_s']:.1f} decode tok/s, {r['decode_tok_cpu_s']:.1f} per CPU-s",
                              flush=True)
    print(_table(results, args.compile))


if __name__ == "__main__":
    main()
