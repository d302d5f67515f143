"""The reference side of ``lora_cpu.py``: a plain PyTorch training loop on transformers + peft.

Run in its own process by ``lora_cpu.py`` (so that its peak RSS is its own):

    python benchmarks/lora_cpu_peft.py SPEC.json

``SPEC.json`` names the HF checkpoint, the dtype, the LoRA / optimizer settings, a ``.pt`` file of
the pre-built batches (the very batches the recipe sees: same samples, order and padding) and an
optional ``.pt`` file of initial ``lora_A`` weights (so both sides start from the same adapter).
The loop is what a careful user would write: model loaded in the training dtype, adapters in
the same dtype (``autocast_adapter_dtype=False``, like ours), no KV cache, fused AdamW, the
cosine schedule of ``transformers``, and the model's own mean token cross-entropy (``labels=``).
Right padding needs no attention mask under causal attention, so none is passed (it would only
make the SDPA call slower). Writes ``{"losses": [...], "step_times": [...], "tokens": [...]}`` to
the ``result`` path of the spec.
"""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from user_config_peft import train_loop  # noqa: E402


def main(spec_path: str) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

    spec = json.loads(open(spec_path).read())
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[spec["dtype"]]
    torch.manual_seed(spec["seed"])
    batches = torch.load(spec["batches"], weights_only=True)[: spec["steps"]]

    model = AutoModelForCausalLM.from_pretrained(spec["checkpoint"], dtype=dtype)
    model.config.use_cache = False
    lora = LoraConfig(r=spec["rank"], lora_alpha=spec["alpha"], lora_dropout=0.0,
                      target_modules=spec["target_modules"], bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora, autocast_adapter_dtype=False)
    if spec.get("init_lora_a"):
        init = torch.load(spec["init_lora_a"], weights_only=True)  # {"layers.{i}.{proj}": [r, d]}
        with torch.no_grad():
            for name, module in model.named_modules():
                if name.endswith(tuple(spec["target_modules"])) and hasattr(module, "lora_A"):
                    layer = name.split(".layers.")[1].split(".")[0]
                    proj = name.rsplit(".", 1)[1]
                    module.lora_A["default"].weight.copy_(init[f"layers.{layer}.{proj}"])
    model.train()

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=spec["weight_decay"], fused=True)
    scheduler = get_cosine_schedule_with_warmup(optimizer, spec["warmup"], spec["steps"])

    result = train_loop(model, optimizer, scheduler, batches)
    model.save_pretrained(spec["adapter_dir"])  # the recipe saves its adapter too
    with open(spec["result"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
