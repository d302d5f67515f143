"""One decode-step linear layer on CPU: float against int8 and int4 weight-only quantized weights.

Times ``layer(x)`` for ``x`` of shape ``[1, in]`` (one token) through ``nn.Linear(in, out)``
quantized by our ``torchtune.training.quantization`` quantizers, in fp32 and bf16 activations,
eager mode, and reports the median over ``--repeats`` timed calls after warm-up. The table, with
a header naming the commit, command and CPU, is written to ``--out``
(``benchmarks/results/quantized_linear_cpu.md`` by default).

Usage:
    python benchmarks/quantized_linear_cpu.py
    python benchmarks/quantized_linear_cpu.py --dim 2048 --threads 1 --repeats 200
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from torchtune.training.quantization import Int4WeightOnlyQuantizer, Int8WeightOnlyQuantizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402  (benchmarks/report.py)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _layer(kind: str, dim: int, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(dim, dim, bias=False)).to(dtype).eval()
    if kind == "int8 weight-only":
        model = Int8WeightOnlyQuantizer().quantize(model)
    elif kind == "int4 weight-only (groups of 128)":
        model = Int4WeightOnlyQuantizer(groupsize=128).quantize(model)
    return model


def median_ms(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median wall time of ``model(x)`` in milliseconds, after 10 warm-up calls."""
    with torch.no_grad():
        for _ in range(10):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=2048, help="in and out features of the layer")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one decode step's matmul)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = report.start()
    kinds = ["float", "int8 weight-only", "int4 weight-only (groups of 128)"]
    rows = ["| weights | " + " | ".join(f"{d} activations" for d in DTYPES) + " |",
            "| --- | " + " | ".join("---:" for _ in DTYPES) + " |"]
    for kind in kinds:
        cells = []
        for dtype in DTYPES.values():
            try:
                model = _layer(kind, args.dim, dtype)
                x = torch.randn(1, args.dim, dtype=dtype)
                cells.append(f"{median_ms(model, x, args.repeats):.3f} ms")
            except RuntimeError as err:  # a quantized format without a kernel for this dtype/device
                cells.append(f"n/a ({str(err).splitlines()[0][:60]})")
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    notes = [f"`[1, {args.dim}] x [{args.dim}, {args.dim}]`, {args.threads} thread(s), eager, median of "
             f"{args.repeats} calls after 10 warm-up calls."]
    report.write_report(args.out or report.default_path(__file__), "Quantized linear layer on CPU",
                        "\n".join(rows), started, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
