"""LoRA fine-tuning of each model family's tiny random-init checkpoint with ``lora_finetune_single_device``
and the family's shipped config: the loss goes down. The recipe runs in this process (``recipe_main``, as
``tune run`` calls it; the CLI itself is covered by test_lora_finetune_single_device.py)."""

import pytest

from tests.recipes._inprocess import run_recipe
from tests.recipes.utils import RECIPE_MODEL, common_overrides, read_losses, write_alpaca_json
from tests.test_utils.hf_fixtures import save_hf_llama
from tests.test_utils.tokenizer_fixtures import train_sentencepiece
from tests.torchtune.models.hf_parity import widen_init

pytestmark = pytest.mark.integration

STEPS = 6
MISTRAL_WINDOW = 16  # shorter than most training samples, so the window is exercised


def _save_hf_mistral(folder):
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=RECIPE_MODEL["vocab_size"], hidden_size=RECIPE_MODEL["embed_dim"],
        intermediate_size=RECIPE_MODEL["intermediate_dim"], num_hidden_layers=RECIPE_MODEL["num_layers"],
        num_attention_heads=RECIPE_MODEL["num_heads"], num_key_value_heads=RECIPE_MODEL["num_kv_heads"],
        max_position_embeddings=RECIPE_MODEL["max_seq_len"], sliding_window=MISTRAL_WINDOW, rms_norm_eps=1e-5,
        rope_theta=10_000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )
    widen_init(MistralForCausalLM(config)).save_pretrained(str(folder), max_shard_size="150KB")


# family -> (config, how to write its checkpoint, LoRA component builder, extra model overrides)
FAMILIES = {
    "code_llama2": (
        "code_llama2/7B_lora_single_device",
        lambda folder: save_hf_llama(folder, vocab_size=RECIPE_MODEL["vocab_size"],
                                     num_kv_heads=RECIPE_MODEL["num_kv_heads"],
                                     max_seq_len=RECIPE_MODEL["max_seq_len"], rope_base=1_000_000.0,
                                     max_shard_size="150KB"),
        # Code Llama is Llama 2's architecture; its RoPE base is 1e6.
        "torchtune.models.llama2.lora_llama2", ["model.rope_base=1000000.0"],
    ),
    "mistral": (
        "mistral/7B_lora_single_device", _save_hf_mistral,
        "torchtune.models.mistral.lora_mistral", ["model.rope_base=10000", f"model.sliding_window={MISTRAL_WINDOW}"],
    ),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_lora_finetune_lowers_the_loss(family, tmp_path):
    config, write_checkpoint, builder, extra = FAMILIES[family]
    ckpt = tmp_path / "base"
    write_checkpoint(ckpt)
    train_sentencepiece(ckpt, vocab_size=RECIPE_MODEL["vocab_size"])
    shards = sorted(p.name for p in ckpt.glob("model-*.safetensors")) or ["model.safetensors"]
    assets = {"ckpt": ckpt, "data": write_alpaca_json(tmp_path / "data.json"), "shards": shards}
    out = tmp_path / "out"
    run_recipe("lora_finetune_single_device", config, [
        *common_overrides(assets, out),
        f"model._component_={builder}", *[f"model.{k}={v}" for k, v in RECIPE_MODEL.items()], *extra,
        "model.lora_attn_modules=[q_proj,v_proj,output_proj]", "model.apply_lora_to_mlp=True",
        "model.lora_rank=8", "model.lora_alpha=16", "batch_size=4", "gradient_accumulation_steps=1",
        "optimizer.lr=1e-2", "optimizer.fused=False", "lr_scheduler.num_warmup_steps=0",
        f"max_steps_per_epoch={STEPS}", "loss._component_=torchtune.modules.loss.CEWithChunkedOutputLoss",
    ], cwd=tmp_path)
    losses = read_losses(out / "logs")
    assert len(losses) == STEPS, losses
    assert sum(losses[-2:]) / 2 < losses[0] - 0.2, losses
