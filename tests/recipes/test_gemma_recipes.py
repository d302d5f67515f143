"""LoRA fine-tuning of a tiny Gemma 3 checkpoint (written by transformers' Gemma3ForCausalLM)
through the ``lora_finetune_single_device`` recipe class, in-process, with the shipped
``gemma3/270M_lora_single_device`` config: the loss goes down, the merged model loads strictly in
transformers, and the PEFT adapter applied to the base model gives the merged model's logits."""

import torch
from omegaconf import OmegaConf

from tests.recipes.utils import common_overrides, read_losses, write_alpaca_json
from tests.torchtune.models.gemma.gemma_reference import TINY, WINDOW, hf_dims, train_gemma_sentencepiece, widen_init
from torchtune._recipe_registry import CONFIGS_DIR

STEPS = 6
VOCAB = 400
DIMS = dict(TINY, vocab_size=VOCAB, num_layers=3, max_seq_len=128, rope_base=1_000_000.0,
            local_rope_base=10_000.0, sliding_window_size=WINDOW, sliding_window_pattern=3)


def test_gemma3_lora_recipe_lowers_the_loss_and_its_outputs_load_in_transformers(tmp_path):
    from peft import PeftModel
    from recipes.lora_finetune_single_device import LoRAFinetuneRecipeSingleDevice
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

    ckpt = tmp_path / "base"
    rope = {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
    config = Gemma3TextConfig(**hf_dims(vocab_size=VOCAB, num_hidden_layers=3, max_position_embeddings=128,
                                        rope_parameters=rope, sliding_window=WINDOW, sliding_window_pattern=3,
                                        query_pre_attn_scalar=TINY["head_dim"]))
    widen_init(Gemma3ForCausalLM(config), std=0.02).save_pretrained(str(ckpt))
    train_gemma_sentencepiece(ckpt, vocab_size=VOCAB)
    assets = {"ckpt": ckpt, "data": write_alpaca_json(tmp_path / "data.json"), "shards": ["model.safetensors"]}
    out = tmp_path / "out"
    cfg = OmegaConf.merge(OmegaConf.load(CONFIGS_DIR / "gemma3" / "270M_lora_single_device.yaml"), OmegaConf.from_dotlist([
        *common_overrides(assets, out), "model._component_=torchtune.models.gemma3.lora_gemma3",
        *[f"model.{k}={v}" for k, v in DIMS.items()], "model.lora_rank=8", "model.lora_alpha=16",
        "batch_size=4", "gradient_accumulation_steps=1", "optimizer.lr=1e-2", "optimizer.fused=False",
        "lr_scheduler.num_warmup_steps=0", f"max_steps_per_epoch={STEPS}",
    ]))
    recipe = LoRAFinetuneRecipeSingleDevice(cfg)
    recipe.setup(cfg)
    recipe.train()
    recipe.cleanup()
    losses = read_losses(out / "logs")
    print("gemma3 lora losses", losses)
    assert len(losses) == STEPS and sum(losses[-2:]) / 2 < losses[0] - 0.2, losses

    epoch = out / "epoch_0"
    merged, info = AutoModelForCausalLM.from_pretrained(str(epoch), output_loading_info=True,
                                                        attn_implementation="eager")
    assert not any(info.values()), info
    base = AutoModelForCausalLM.from_pretrained(str(ckpt), attn_implementation="eager")
    adapted = PeftModel.from_pretrained(base, str(epoch / "adapter")).eval()
    x = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(adapted(x).logits, merged.eval()(x).logits, atol=1e-4, rtol=1e-4)
