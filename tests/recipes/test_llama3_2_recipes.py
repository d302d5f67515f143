"""LoRA fine-tuning of a tiny Llama 3.2 (tied embeddings, llama3 RoPE scaling, tiktoken tokenizer
with Llama 3's special tokens), on one process (``recipe_main`` in this process, as ``tune run`` calls it)
and on two (gloo) through the real ``tune run --nproc_per_node 2``."""

import json

import pytest
import torch

from tests.recipes._inprocess import run_recipe
from tests.recipes.utils import common_overrides, read_losses, run_tune, write_alpaca_json
from tests.test_utils.tokenizer_fixtures import write_tiktoken_bpe
from tests.torchtune.models.llama3 import hf_reference as hf

pytestmark = pytest.mark.integration

# 406 BPE ranks + Llama 3's 256 special-token slots + <|image|> = 663 ids; rounded up to 704.
VOCAB = 704
STEPS = 6
MODEL = dict(hf.TINY, vocab_size=VOCAB, scale_factor=8, old_context_len=16)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama3_2_assets")
    ckpt = root / "base"
    hf.save_reference(ckpt, rope_scaling=hf.LLAMA3_SCALING, tie=True, vocab_size=VOCAB)
    write_tiktoken_bpe(ckpt, num_merges=150, name="tokenizer.model")
    return {"ckpt": ckpt, "data": write_alpaca_json(root / "data.json"), "shards": ["model.safetensors"]}


def _args(assets, out, recipe, config, *extra):
    return ["run", *extra, recipe, "--config", config, *common_overrides(assets, out),
            "model._component_=torchtune.models.llama3_2.lora_llama3_2",
            *[f"model.{k}={v}" for k, v in MODEL.items()],
            "model.lora_attn_modules=[q_proj,v_proj,output_proj]", "model.apply_lora_to_mlp=True",
            "model.lora_rank=8", "model.lora_alpha=16", "gradient_accumulation_steps=1", "optimizer.lr=1e-2",
            "optimizer.fused=False", "lr_scheduler.num_warmup_steps=0", f"max_steps_per_epoch={STEPS}"]


def _lowered(losses):
    return len(losses) == STEPS and sum(losses[-2:]) / 2 < losses[0] - 0.2


def test_single_device_lora_lowers_the_loss(assets, tmp_path):
    from transformers import AutoModelForCausalLM

    args = _args(assets, tmp_path, "lora_finetune_single_device", "llama3_2/1B_lora_single_device")
    run_recipe("lora_finetune_single_device", "llama3_2/1B_lora_single_device", [*args[4:], "batch_size=4"],
               cwd=tmp_path)
    losses = read_losses(tmp_path / "logs")
    assert _lowered(losses), losses
    # The merged tied model is saved without lm_head and loads strictly in transformers.
    merged, info = AutoModelForCausalLM.from_pretrained(str(tmp_path / "epoch_0"), output_loading_info=True)
    assert not any(info.values()), info
    assert merged.config.tie_word_embeddings
    assert json.loads((tmp_path / "epoch_0" / "config.json").read_text())["rope_parameters"]["rope_type"] == "llama3"


def test_two_process_lora_lowers_the_loss(assets, tmp_path):
    args = _args(assets, tmp_path, "lora_finetune_distributed", "llama3_2/1B_lora", "--nproc_per_node", "2")
    run_tune([*args, "batch_size=2"], cwd=tmp_path)
    assert _lowered(read_losses(tmp_path / "logs")), read_losses(tmp_path / "logs")
    assert (tmp_path / "epoch_0" / "adapter" / "adapter_config.json").is_file()


@pytest.fixture(scope="module")
def untied_assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama3_assets")
    ckpt = root / "base"
    hf.save_reference(ckpt, rope_scaling=hf.LLAMA3_SCALING, tie=False, vocab_size=VOCAB)
    write_tiktoken_bpe(ckpt, num_merges=150, name="tokenizer.model")
    return {"ckpt": ckpt, "data": write_alpaca_json(root / "data.json"), "shards": ["model.safetensors"]}


@pytest.mark.parametrize("family, builder, config, extra", [
    # Llama 3 has no RoPE scaling; the checkpoint's scaling is then a mismatch that only the
    # logits would show, and training still has to work from these weights.
    ("llama3", "lora_llama3", "llama3/8B_lora_single_device", {}),
    ("llama3_1", "lora_llama3_1", "llama3_1/8B_lora_single_device", {"scale_factor": 8, "old_context_len": 16}),
])
def test_llama3_and_llama3_1_lora_lower_the_loss(untied_assets, tmp_path, family, builder, config, extra):
    dims = dict(hf.TINY, vocab_size=VOCAB, **extra)
    overrides = [
        *common_overrides(untied_assets, tmp_path),
        f"model._component_=torchtune.models.{family}.{builder}", *[f"model.{k}={v}" for k, v in dims.items()],
        "model.lora_attn_modules=[q_proj,v_proj]", "model.apply_lora_to_mlp=True", "model.lora_rank=8",
        "model.lora_alpha=16", "gradient_accumulation_steps=1", "optimizer.lr=1e-2", "optimizer.fused=False",
        "lr_scheduler.num_warmup_steps=0", f"max_steps_per_epoch={STEPS}", "batch_size=4",
        # These upstream configs read Meta's consolidated.00.pth; the test checkpoint is in HF layout.
        "checkpointer._component_=torchtune.training.FullModelHFCheckpointer", "checkpointer.model_type=LLAMA3"]
    run_recipe("lora_finetune_single_device", config, overrides, cwd=tmp_path)
    assert _lowered(read_losses(tmp_path / "logs")), read_losses(tmp_path / "logs")
    assert (tmp_path / "epoch_0" / "adapter" / "adapter_config.json").is_file()
