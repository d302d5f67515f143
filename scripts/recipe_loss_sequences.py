"""Record the loss sequences of the demo config and the tiny recipe runs, to check a refactor.

    python scripts/recipe_loss_sequences.py --out before.json            # on the old code
    python scripts/recipe_loss_sequences.py --out after.json --compare before.json

Every run goes through the real ``tune`` CLI on the tiny assets of ``tests/recipes``; the losses
are read at full precision from the DiskLogger files. With ``--compare`` the script exits 1 unless
every sequence is bit-identical to the recorded one.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from tests.recipes.utils import common_overrides, make_assets, model_overrides, read_losses, run_tune  # noqa: E402

LORA = ["model.lora_attn_modules=[q_proj,v_proj,output_proj]", "model.apply_lora_to_mlp=True", "model.lora_rank=8",
        "model.lora_alpha=16", "optimizer.lr=1e-2", "optimizer.fused=False", "lr_scheduler.num_warmup_steps=0"]


def runs(assets, root: Path):
    """(name, tune args) of every recorded run."""
    def out(name):
        return root / name

    def lora(name, *extra):
        return ["run", "lora_finetune_single_device", "--config", "llama2/7B_lora_single_device",
                *common_overrides(assets, out(name)), *model_overrides(), *LORA, "batch_size=4",
                "gradient_accumulation_steps=1", "max_steps_per_epoch=8", *extra]

    full_args = lambda name, *extra: [*common_overrides(assets, out(name)),  # noqa: E731
                                      *model_overrides("torchtune.models.llama2.llama2"), "optimizer.lr=1e-3",
                                      "optimizer.fused=False", "clip_grad_norm=1.0", "max_steps_per_epoch=4", *extra]
    yield "lora", lora("lora", "save_every_n_steps=4")
    yield "qlora", lora("qlora", "model.quantize_base=True")
    yield "dora", lora("dora", "model.use_dora=True")
    yield "lora_grad_accum", lora("lora_grad_accum", "batch_size=2", "gradient_accumulation_steps=2")
    yield "full", ["run", "full_finetune_single_device", "--config", "llama2/7B_full_low_memory",
                   *full_args("full", "batch_size=2", "gradient_accumulation_steps=2", "optimizer_in_bwd=False")]
    yield "full_optim_in_bwd", ["run", "full_finetune_single_device", "--config", "llama2/7B_full_low_memory",
                                *full_args("full_optim_in_bwd", "batch_size=4", "optimizer_in_bwd=True",
                                                             "clip_grad_norm=null")]
    yield "full_distributed_2rank", ["run", "--nproc_per_node", "2", "full_finetune_distributed", "--config",
                                     "llama2/7B_full", *full_args("full_distributed_2rank", "batch_size=1",
                                                                  "gradient_accumulation_steps=2")]
    yield "lora_distributed_2rank", ["run", "--nproc_per_node", "2", "lora_finetune_distributed", "--config",
                                     "llama2/7B_lora", *common_overrides(assets, out("lora_distributed_2rank")),
                                     *model_overrides(), *LORA, "batch_size=2", "max_steps_per_epoch=6",
                                     "gradient_accumulation_steps=1",
                                     "loss._component_=torchtune.modules.loss.LinearCrossEntropyLoss"]


def demo_run(root: Path):
    """The demo config, unchanged but for a loss logged at every step."""
    from torchtune._demo import prepare

    out = root / "demo"
    prepare(out)
    return ["run", "lora_finetune_single_device", "--config", "demo/tiny_llama_lora", f"output_dir={out}",
            "log_every_n_steps=1"], out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write: {run name: [loss, ...]}")
    parser.add_argument("--compare", help="JSON file written earlier; exit 1 unless every sequence is identical")
    parser.add_argument("--only", help="comma-separated run names")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        assets = make_assets(root / "assets")
        todo = list(runs(assets, root))
        cmd, demo_out = demo_run(root)
        todo.append(("demo", cmd))
        for name, cmd in todo:
            if only and name not in only:
                continue
            out = demo_out if name == "demo" else root / name
            out.mkdir(parents=True, exist_ok=True)
            run_tune(cmd, cwd=out, timeout=2400)
            results[name] = read_losses(out / "logs")
            print(f"{name}: {len(results[name])} losses, first {results[name][0]!r}, last {results[name][-1]!r}",
                  flush=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        bad = [name for name in results if results[name] != before.get(name)]
        for name in bad:
            print(f"DIFFERENT: {name}\n  before {before.get(name)}\n  after  {results[name]}")
        print(f"{len(results) - len(bad)} of {len(results)} loss sequences bit-identical")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
