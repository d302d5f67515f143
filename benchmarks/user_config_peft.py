"""The reference side of ``user_config_cpu.py``: the same training, written with transformers + peft.

Run in its own process by ``user_config_cpu.py`` (so that its peak RSS is its own):

    python benchmarks/user_config_peft.py SPEC.json

What a careful user writes to do what the torchtune config does: the HF checkpoint loaded in the
training dtype (``SPEC["dtype"]``, ``fp32`` or ``bf16``); for ``lora`` a peft ``LoraConfig`` on the
same projections (``q_proj``, ``v_proj``, ``o_proj`` and the MLP's ``gate_proj``, ``up_proj``,
``down_proj``), rank and alpha, adapters in the same dtype, the same initial ``lora_A`` as our
recipe; for ``qlora`` the same on a bitsandbytes NF4 base (double-quantised scales, as torchao's
NF4); for ``full`` every weight trained. Gradient checkpointing when the config enables activation
checkpointing (``use_reentrant=False``); the config's optimizer (AdamW with its lr, weight decay and
``fused``) and transformers' cosine schedule with the config's warmup; the model's own mean token
cross-entropy (``labels=``); the very batches our recipe trains on (``SPEC["batches"]``). Right
padding needs no attention mask under causal attention, so none is passed (it would only slow SDPA
down).

Writes ``{"losses", "step_times", "tokens"}`` to ``SPEC["result"]``.
"""

import json
import sys
import time

import torch


def _peft_model(model, spec):
    from peft import get_peft_model, LoraConfig

    lora = LoraConfig(r=spec["rank"], lora_alpha=spec["alpha"], lora_dropout=0.0, target_modules=spec["targets"],
                      bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora, autocast_adapter_dtype=False)
    init = torch.load(spec["init_lora_a"], weights_only=True)  # {"layers.{i}.{hf proj}": [r, in]}
    with torch.no_grad():
        for name, module in model.named_modules():
            if hasattr(module, "lora_A") and ".layers." in name:
                layer = name.split(".layers.")[1].split(".")[0]
                module.lora_A["default"].weight.copy_(init[f"layers.{layer}.{name.rsplit('.', 1)[1]}"])
    return model


def train_loop(model, optimizer, scheduler, batches) -> dict:
    """Plain training steps on ``batches``; per-step losses, wall times and trained-token counts."""
    losses, step_times, tokens = [], [], []
    t0 = time.perf_counter()
    for batch in batches:
        out = model(input_ids=batch["tokens"], labels=batch["labels"], use_cache=False)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        losses.append(out.loss.item())  # the step's one host sync, for logging
        now = time.perf_counter()
        step_times.append(now - t0)
        t0 = now
        tokens.append(int((batch["labels"][:, 1:] != -100).sum()))
    return {"losses": losses, "step_times": step_times, "tokens": tokens}


def main(spec_path: str) -> None:
    from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

    spec = json.loads(open(spec_path).read())
    torch.manual_seed(0)
    batches = torch.load(spec["batches"], weights_only=True)
    kwargs = {}
    if spec["method"] == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True,
                                                           bnb_4bit_compute_dtype=torch.float32)
        kwargs["device_map"] = "cpu"
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[spec.get("dtype", "fp32")]
    if spec["method"] == "qlora":
        kwargs["quantization_config"].bnb_4bit_compute_dtype = dtype
    model = AutoModelForCausalLM.from_pretrained(spec["checkpoint"], dtype=dtype, **kwargs)
    model.config.use_cache = False
    if spec["method"] in ("lora", "qlora"):
        model = _peft_model(model, spec)
    if spec["activation_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, **spec["optimizer"])
    scheduler = get_cosine_schedule_with_warmup(optimizer, spec["warmup"], spec["total_steps"])
    result = train_loop(model, optimizer, scheduler, batches)
    with open(spec["result"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
