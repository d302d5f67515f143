"""Square matmul throughput on CPU per dtype: does this CPU run bf16 natively or emulate it?

Times ``a @ b`` for ``[n, n]`` inputs (2 n^3 FLOPs) in fp32 and bf16, after one warm-up call,
and reports the best of ``--repeats`` calls as GFLOP/s. Without AVX-512-BF16 or AMX, PyTorch
emulates bf16 matmuls and the bf16 row is orders of magnitude below fp32; with them, bf16 is the
faster row. The table, with a header naming the commit, command and CPU, is written to ``--out``
(``benchmarks/results/matmul_cpu.md`` by default).

Usage:
    python benchmarks/matmul_cpu.py
    python benchmarks/matmul_cpu.py --sizes 512 2048 --dtypes fp32
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  (benchmarks/report.py)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def gflops(n: int, dtype: torch.dtype, repeats: int) -> float:
    """Best-of-``repeats`` GFLOP/s of one ``[n, n] @ [n, n]`` matmul in ``dtype``."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    a @ b  # warm-up: thread pool, kernel selection
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1024])
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown result file (default benchmarks/results/matmul_cpu.md)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = report.start()
    lines = ["| n | dtype | GFLOP/s (best of repeats) |", "| ---: | --- | ---: |"]
    for n in args.sizes:
        for name in args.dtypes:
            rate = gflops(n, DTYPES[name], args.repeats)
            lines.append(f"| {n} | {name} | {rate:.1f} |")
            print(lines[-1], flush=True)
    report.write_report(args.out or report.default_path(__file__), "Matmul throughput on CPU (matmul_cpu.py)",
                        "\n".join(lines), started, [f"Best of {args.repeats} call(s) after one warm-up call."])


if __name__ == "__main__":
    main()
