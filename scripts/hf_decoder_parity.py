"""Largest fp32 logit error of hf_decoder against transformers, per covered architecture.

    python scripts/hf_decoder_parity.py [--out benchmarks/results/hf_decoder_parity.md]

Each architecture is the tiny random-init model of tests/torchtune/models/hf_decoder/conftest.py
(every parameter perturbed), saved with ``save_pretrained``, built by ``hf_decoder`` from its
config.json and loaded through ``FullModelHFCheckpointer(model_type="HF_DECODER")``. Columns: the
full forward on 2 x 40 tokens (past every tiny window), KV-cache decoding against that forward,
and the round trip (our save loaded back by transformers).
"""

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import report  # noqa: E402
from tests.torchtune.models.hf_decoder.conftest import ARCHS, MODEL_TYPE, save_hf_model  # noqa: E402
from torchtune.models import hf_decoder  # noqa: E402
from torchtune.training import FullModelHFCheckpointer  # noqa: E402


def measure(arch: str, folder: Path):
    from transformers import AutoModelForCausalLM

    reference = save_hf_model(folder / "hf", arch)
    ckpt = FullModelHFCheckpointer(checkpoint_dir=str(folder / "hf"), checkpoint_files=["model.safetensors"],
                                   model_type="HF_DECODER", output_dir=str(folder / "out"))
    model = hf_decoder(str(folder / "hf")).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"], strict=True)
    tokens = torch.randint(0, 128, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(tokens).logits
        full = model(tokens)
        model.setup_caches(batch_size=2, dtype=torch.float32, decoder_max_seq_len=40)
        steps = [model(tokens[:, :8])] + [model(tokens[:, i:i + 1], input_pos=torch.tensor([[i], [i]]))
                                          for i in range(8, 40)]
        model.reset_caches()
    ckpt.save_checkpoint({"model": {k: v for k, v in model.state_dict().items() if "kv_cache" not in k}}, epoch=0)
    back = AutoModelForCausalLM.from_pretrained(str(folder / "out" / "epoch_0"), dtype=torch.float32,
                                                attn_implementation="eager").eval()
    with torch.no_grad():
        round_trip = (back(tokens).logits - expected).abs().max().item()
    return ((full - expected).abs().max().item(), (torch.cat(steps, 1) - full).abs().max().item(), round_trip,
            expected.abs().max().item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hf_decoder_parity.md"))
    args = parser.parse_args()
    started = report.start()
    rows = ["| architecture (model_type) | max \\|logit error\\| vs transformers | KV cache vs full | round trip "
            "| max \\|logit\\| |", "|---|---|---|---|---|"]
    for arch in sorted(ARCHS):
        with tempfile.TemporaryDirectory() as tmp:
            err, cache, trip, scale = measure(arch, Path(tmp))
        name = arch if MODEL_TYPE.get(arch) is None else f"{arch} ({MODEL_TYPE[arch]})"
        rows.append(f"| {name} | {err:.1e} | {cache:.1e} | {trip:.1e} | {scale:.1f} |")
        print(rows[-1], flush=True)
    report.write_report(Path(args.out), "hf_decoder parity against transformers (fp32)", "\n".join(rows), started)


if __name__ == "__main__":
    main()
