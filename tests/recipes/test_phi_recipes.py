"""LoRA fine-tuning of tiny Phi-3 mini (MHA) and Phi-4 (GQA) checkpoints, written by transformers'
Phi3ForCausalLM with fused ``qkv_proj`` / ``gate_up_proj``, through ``lora_finetune_single_device`` (its
``recipe_main`` in this process, as ``tune run`` calls it) with each family's shipped config: the loss goes
down, the merged model loads strictly in transformers, and the adapter is saved in torchtune's format only
(PEFT cannot address q/v inside a fused projection), with a log line saying so."""

import pytest
import torch

from tests.recipes._inprocess import captured_log, run_recipe
from tests.recipes.utils import RECIPE_MODEL, common_overrides, read_losses, write_alpaca_json
from tests.test_utils.tokenizer_fixtures import train_sentencepiece
from tests.torchtune.models.phi3.phi3_reference import make_hf_phi3

pytestmark = pytest.mark.integration

STEPS = 6
# family -> (config, model type, LoRA builder, dims): Phi-4's shape is grouped-query with RoPE base 250000.
FAMILIES = {
    "phi3": ("phi3/mini_lora_single_device", "torchtune.models.phi3.lora_phi3",
             dict(RECIPE_MODEL, num_kv_heads=RECIPE_MODEL["num_heads"], norm_eps=1e-5, rope_base=10_000)),
    "phi4": ("phi4/14B_lora_single_device", "torchtune.models.phi3.lora_phi3",
             dict(RECIPE_MODEL, num_heads=8, num_kv_heads=2, norm_eps=1e-5, rope_base=250_000)),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_phi_lora_finetune_lowers_the_loss_and_saves_a_torchtune_adapter(family, tmp_path):
    from transformers import AutoModelForCausalLM

    config, builder, dims = FAMILIES[family]
    ckpt = tmp_path / "base"
    make_hf_phi3(dims).save_pretrained(str(ckpt))
    # The Phi tokenizers come in their own issue; a SentencePiece model stands in (the model is under test).
    train_sentencepiece(ckpt, vocab_size=dims["vocab_size"])
    assets = {"ckpt": ckpt, "data": write_alpaca_json(tmp_path / "data.json"), "shards": ["model.safetensors"]}
    out = tmp_path / "out"
    with captured_log() as log:
        run_recipe("lora_finetune_single_device", config, [
            *common_overrides(assets, out),
            "~tokenizer", "tokenizer._component_=torchtune.models.llama2.llama2_tokenizer",
            f"tokenizer.path={ckpt / 'tokenizer.model'}", "tokenizer.max_seq_len=128",
            f"model._component_={builder}", *[f"model.{k}={v}" for k, v in dims.items()],
            "model.lora_rank=8", "model.lora_alpha=16", "batch_size=4", "gradient_accumulation_steps=1",
            "optimizer.lr=1e-2", "optimizer.fused=False", "lr_scheduler.num_warmup_steps=0",
            f"max_steps_per_epoch={STEPS}",
        ], cwd=tmp_path)
    losses = read_losses(out / "logs")
    assert len(losses) == STEPS, losses
    assert sum(losses[-2:]) / 2 < losses[0] - 0.2, losses
    epoch = out / "epoch_0"
    adapter = torch.load(epoch / "adapter" / "adapter_model.pt", weights_only=True)
    assert {"layers.0.attn.q_proj.lora_a.weight", "layers.1.mlp.w3.lora_b.weight"} <= adapter.keys()
    assert sorted(p.name for p in (epoch / "adapter").iterdir()) == ["adapter_model.pt"]  # no PEFT files
    assert "fuses q/k/v and gate/up projections in Hugging Face format, so PEFT has no module for a LoRA on " \
           "q_proj or w1: PEFT adapter files not written, only adapter_model.pt" in log.getvalue()
    merged, info = AutoModelForCausalLM.from_pretrained(str(epoch), output_loading_info=True)
    assert not any(info.values()), info
    assert type(merged).__name__ == "Phi3ForCausalLM"
