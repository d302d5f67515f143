"""Greedy decoding speed on CPU: ``torchtune.generation.generate`` against ``transformers`` ``generate``.

Both run the same random-init ~58M-parameter Llama (vocab 32000, dim 512, 8 layers, 8 heads,
ffn 1376), saved once with ``save_pretrained`` and loaded by each side.

Decode tokens/s is ``b / median(step time)``: each implementation records a timestamp after every
decode step (a wrapped ``generate_next_token`` for ours, a ``StoppingCriteria`` for
``transformers``), so the prefill is excluded and the median ignores steps slowed by other
processes. Both models live in one timing process and their runs alternate (ours, theirs,
theirs, ours, ...), best of ``--repeats`` each: on a shared machine whose speed drifts, neither
side gets the quiet phase to itself. "mean tok/s" is ``b * (k - 1) / (t(k) - t(1))`` over the
``k`` timestamps of a whole run (best of the repeats; prefill excluded), for reference. Peak RSS
comes from one separate process per implementation and dtype, reset after loading (Linux), so it
is the peak of generating with the loaded model at the largest batch.

KV caches differ: ours decodes with ``torchtune.modules.KVCache``, one static buffer per layer
preallocated to prompt + new tokens (``setup_caches``); ``transformers`` ``generate`` builds the
cache its generation config asks for (by default a ``DynamicCache``, whose layers grow by
concatenation every step). The table's "KV cache" column names the class each side actually used,
read from the objects after a run, not from this text. The table, with a header naming the
commit, command and CPU, is written to ``--out`` (``benchmarks/results/generate_cpu.md`` by default).

Usage:
    python benchmarks/generate_cpu.py                     # fp32 and bf16, batch 1 and 4, 128 tokens
    python benchmarks/generate_cpu.py --threads 1         # steadier on a busy machine
    python benchmarks/generate_cpu.py --compile           # also torch.compile our decode step
    python benchmarks/generate_cpu.py --dtypes fp32 --batch-sizes 1 --new-tokens 32 --repeats 2
"""

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  (benchmarks/report.py)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MODEL = dict(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
             num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048,
             rms_norm_eps=1e-5, rope_theta=10000.0)
Runner = Callable[[torch.Tensor, int, List[float]], torch.Tensor]
# (run, describe_cache): describe_cache() names the KV cache the last run decoded with.
Impl = Tuple[Runner, Callable[[], str]]


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
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM line in /proc/self/status")


def _median_step(stamps: List[float]) -> float:
    steps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
    return steps[len(steps) // 2]


def _ours(folder: Path, dtype: torch.dtype, compile_step: bool, cache_len: int) -> Impl:
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
    step = torch.compile(generate_next_token, dynamic=False) if compile_step else generate_next_token

    def run(prompt: torch.Tensor, n: int, stamps: List[float]) -> torch.Tensor:
        b = prompt.shape[0]
        if not model.caches_are_setup() or model.layers[0].attn.kv_cache.batch_size != b:
            if model.caches_are_setup():
                delete_kv_caches(model)
            # One static cache per batch size, long enough for the longest run.
            model.setup_caches(batch_size=b, dtype=dtype, decoder_max_seq_len=cache_len)

        def timed_step(*args, **kwargs):
            out = step(*args, **kwargs)
            stamps.append(time.perf_counter())
            return out

        tokens, _ = generate(model, prompt, max_generated_tokens=n, temperature=0,
                             custom_generate_next_token=timed_step)
        return tokens

    def describe_cache() -> str:
        cache = model.layers[0].attn.kv_cache
        return (f"{type(cache).__module__}.{type(cache).__name__}, static, preallocated "
                f"{list(cache.k_cache.shape)} per layer")

    return run, describe_cache


def _hf(folder: Path, dtype: torch.dtype, compile_step: bool, cache_len: int) -> Impl:
    from transformers import LlamaForCausalLM, StoppingCriteria, StoppingCriteriaList

    model = LlamaForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()

    class Stamp(StoppingCriteria):  # called once per generated token, never stops
        def __init__(self, stamps: List[float]) -> None:
            self.stamps = stamps

        def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
            self.stamps.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    def run(prompt: torch.Tensor, n: int, stamps: List[float]) -> torch.Tensor:
        with torch.no_grad():
            return model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                  max_new_tokens=n, min_new_tokens=n, pad_token_id=0,
                                  stopping_criteria=StoppingCriteriaList([Stamp(stamps)]))

    def describe_cache() -> str:
        # The same call as `run`, two tokens, asking generate to hand back the cache it built.
        prompt = _prompt(1, 4)
        with torch.no_grad():
            out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                 max_new_tokens=2, min_new_tokens=2, pad_token_id=0, return_dict_in_generate=True)
        cache = out.get("cache", out.get("past_key_values"))
        layers = sorted({type(layer).__name__ for layer in getattr(cache, "layers", [])})
        return (f"{type(cache).__module__}.{type(cache).__name__}" + (f" of {', '.join(layers)}" if layers else "")
                + f" (generation_config.cache_implementation={model.generation_config.cache_implementation})")

    return run, describe_cache


def _prompt(b: int, length: int) -> torch.Tensor:
    return torch.randint(3, MODEL["vocab_size"], (b, length), generator=torch.Generator().manual_seed(b))


def _timing_worker(args: argparse.Namespace, dtype_name: str) -> None:
    folder, dtype, cache_len = Path(args.model_dir), DTYPES[dtype_name], args.prompt_len + args.new_tokens
    impls = {impl: {"ours": _ours, "hf": _hf}[impl](folder, dtype, args.compile, cache_len) for impl in args.impls}
    runners = {impl: run for impl, (run, _) in impls.items()}
    for b in args.batch_sizes:
        prompt = _prompt(b, args.prompt_len)
        for run in runners.values():
            run(prompt, 8, [])  # warm-up (and compilation when --compile)
        best = {impl: {"step": float("inf"), "total": float("inf"), "span": float("inf")} for impl in runners}
        tokens = {}
        for r in range(args.repeats):
            order = list(runners) if r % 2 == 0 else list(runners)[::-1]
            for impl in order + order[::-1]:  # each side once early and once late in the repeat
                stamps: List[float] = []
                t1 = time.perf_counter()
                tokens[impl] = runners[impl](prompt, args.new_tokens, stamps)
                t2 = time.perf_counter()
                # Ours stamps decode steps only (the first token comes out of the prefill call), HF
                # stamps every token: rates use each side's own number of stamped intervals.
                if len(stamps) < 2:
                    raise RuntimeError(f"{impl}: {len(stamps)} token timestamps; need --new-tokens >= 3")
                best[impl]["total"] = min(best[impl]["total"], t2 - t1)
                best[impl]["span"] = min(best[impl]["span"], (stamps[-1] - stamps[0]) / (len(stamps) - 1))
                best[impl]["step"] = min(best[impl]["step"], _median_step(stamps))
        for impl, t in best.items():
            print(json.dumps({
                "impl": impl, "dtype": dtype_name, "batch": b, "decode_tok_s": b / t["step"],
                "mean_tok_s": b / t["span"],
                "total_s": t["total"], "tokens": tokens[impl][:, args.prompt_len:].tolist(),
                "kv_cache": impls[impl][1](),
            }), flush=True)


def _rss_worker(args: argparse.Namespace, impl: str, dtype_name: str) -> None:
    b = max(args.batch_sizes)
    run, _ = {"ours": _ours, "hf": _hf}[impl](Path(args.model_dir), DTYPES[dtype_name], False,
                                              args.prompt_len + args.new_tokens)
    gc.collect()
    # The peak of generation with the loaded model, not of each side's way of reading the file.
    reset = _reset_peak_rss()
    run(_prompt(b, args.prompt_len), args.new_tokens, [])
    print(json.dumps({"impl": impl, "dtype": dtype_name, "peak_rss_mib": _peak_rss_mib() if reset else None}),
          flush=True)


def _first_mismatch(a: List[List[int]], b: List[List[int]]) -> str:
    for step in range(len(a[0])):
        if any(row_a[step] != row_b[step] for row_a, row_b in zip(a, b)):
            return f"from token {step}"
    return "all"


def _table(results: List[Dict], rss: Dict, compiled: bool) -> str:
    by_key = {(r["impl"], r["dtype"], r["batch"]): r for r in results}
    ours_name = "ours (compiled step)" if compiled else "ours"
    lines = ["| impl | dtype | batch | decode tok/s (median step) | mean tok/s | total s | peak RSS MiB | "
             "same greedy tokens as HF | KV cache |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in sorted(results, key=lambda r: (r["dtype"], r["batch"], r["impl"] != "ours")):
        other = by_key.get(("hf", r["dtype"], r["batch"]))
        same = _first_mismatch(r["tokens"], other["tokens"]) if r["impl"] == "ours" and other else ""
        name = ours_name if r["impl"] == "ours" else "transformers"
        peak = rss.get((r["impl"], r["dtype"]))
        lines.append(f"| {name} | {r['dtype']} | {r['batch']} | {r['decode_tok_s']:.1f} | {r['mean_tok_s']:.1f} | "
                     f"{r['total_s']:.2f} | {f'{peak:.0f}' if peak else ''} | {same} | {r['kv_cache']} |")
    return "\n".join(lines)


def _run_worker(cmd: List[str]) -> List[Dict]:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {cmd[2:5]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = proc.stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="alternating best-of repeats per timing")
    parser.add_argument("--compile", action="store_true", help="torch.compile our decode step")
    parser.add_argument("--impls", nargs="+", default=["ours", "hf"], choices=["ours", "hf"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (default: torch's choice); 1 is steadier on a busy machine")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown result file (default benchmarks/results/generate_cpu.md)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.worker[0] == "timing":
            return _timing_worker(args, args.worker[1])
        return _rss_worker(args, args.worker[1], args.worker[2])

    started = report.start()
    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, prompt {args.prompt_len} tokens, "
          f"{args.new_tokens} new tokens, greedy", flush=True)
    results, rss = [], {}
    with tempfile.TemporaryDirectory() as folder:
        _save_model(Path(folder))
        passthrough = ["--model-dir", folder, "--batch-sizes", *map(str, args.batch_sizes), "--new-tokens",
                       str(args.new_tokens), "--prompt-len", str(args.prompt_len), "--repeats", str(args.repeats),
                       "--impls", *args.impls] + (["--threads", str(args.threads)] if args.threads else [])
        passthrough += ["--compile"] if args.compile else []
        for dtype_name in args.dtypes:
            for r in _run_worker([sys.executable, __file__, "--worker", "timing", dtype_name, *passthrough]):
                results.append(r)
                print(f"  {r['impl']:5s} {r['dtype']} batch {r['batch']}: {r['decode_tok_s']:.1f} decode tok/s",
                      flush=True)
            for impl in args.impls:
                for r in _run_worker([sys.executable, __file__, "--worker", "rss", impl, dtype_name, *passthrough]):
                    rss[(r["impl"], r["dtype"])] = r["peak_rss_mib"]
    notes = [f"Random-init {MODEL['num_hidden_layers']}-layer Llama (dim {MODEL['hidden_size']}, vocab "
             f"{MODEL['vocab_size']}); prompt {args.prompt_len} tokens, {args.new_tokens} new tokens, greedy; "
             f"{threads} threads per worker; best of {args.repeats} alternating repeat(s)."]
    report.write_report(args.out or report.default_path(__file__), "Greedy decoding on CPU, ours vs transformers "
                        "generate (generate_cpu.py)", _table(results, rss, args.compile), started, notes)


if __name__ == "__main__":
    main()
