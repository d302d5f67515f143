"""``tune run`` with the ``hf_decoder/*`` configs on architectures no family of ours builds: the
user's command (a checkpoint folder and ``checkpoint_dir=``) fine-tunes and the loss goes down."""

import pytest

from tests.recipes.utils import read_losses, run_tune, write_alpaca_json
from tests.test_utils.tokenizer_fixtures import write_hf_tokenizer
from tests.torchtune.models.hf_decoder.test_hf_tokenizer import CHATML

pytestmark = pytest.mark.integration

STEPS = 6
# Non-family architectures, tiny: (model_type, config overrides).
ARCHS = {
    "starcoder2": dict(sliding_window=16, use_bias=True),
    "gpt_neox": dict(num_key_value_heads=4),  # parallel residual, partial rotary, fused per-head qkv
    "gpt2": dict(num_key_value_heads=4, n_inner=128),  # learned positions, Conv1D weights
}


def _checkpoint(folder, model_type, overrides):
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    tokenizer_json, _ = write_hf_tokenizer(folder / "tok", vocab_size=400) if (folder / "tok").mkdir(
        parents=True) is None else None
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(tokenizer_json), bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(str(folder))
    dims = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256)
    config = AutoConfig.for_model(model_type, **{**dims, **overrides})
    AutoModelForCausalLM.from_config(config).save_pretrained(str(folder))


@pytest.mark.parametrize("model_type", sorted(ARCHS))
def test_lora_finetune_of_a_non_family_architecture_lowers_the_loss(model_type, tmp_path):
    ckpt = tmp_path / "model"
    _checkpoint(ckpt, model_type, ARCHS[model_type])
    out = tmp_path / "out"
    run_tune([
        "run", "lora_finetune_single_device", "--config", "hf_decoder/lora_single_device",
        f"checkpoint_dir={ckpt}", f"output_dir={out}", "tokenizer.max_seq_len=128",
        "dataset._component_=torchtune.datasets.alpaca_dataset", "dataset.source=json",
        f"dataset.data_files={write_alpaca_json(tmp_path / 'data.json')}", "device=cpu", "dtype=fp32", "seed=0",
        "enable_activation_checkpointing=False", "batch_size=4", "gradient_accumulation_steps=1",
        "optimizer.lr=1e-2", "optimizer.fused=False", "lr_scheduler.num_warmup_steps=0",
        f"max_steps_per_epoch={STEPS}", "log_peak_memory_stats=False",
    ], cwd=tmp_path)
    losses = read_losses(out / "logs")
    assert len(losses) == STEPS, losses
    assert sum(losses[-2:]) / 2 < losses[0] - 0.2, losses
    assert (out / "epoch_0" / "config.json").is_file() and list((out / "epoch_0").glob("*.safetensors"))


@pytest.mark.parametrize("launch, config, model_type", [
    (["--nproc_per_node", "2", "lora_finetune_distributed"], "hf_decoder/lora", "gpt_neox"),
    (["--nproc_per_node", "2", "full_finetune_distributed"], "hf_decoder/full", "gpt2"),
    (["lora_finetune_single_device"], "hf_decoder/qlora_single_device", "starcoder2"),
    # Full training on one device: the 2-rank full run covers the recipe's hf_decoder path.
    pytest.param(["full_finetune_single_device"], "hf_decoder/full_single_device", "gpt_neox",
                 marks=pytest.mark.slow),
], ids=["lora-2-ranks", "full-2-ranks", "qlora", "full"])
def test_distributed_and_qlora_configs_train(launch, config, model_type, tmp_path):
    ckpt = tmp_path / "model"
    _checkpoint(ckpt, model_type, ARCHS[model_type])
    out = tmp_path / "out"
    lr = "1e-3" if "full" in config else "1e-2"
    run_tune([
        "run", *launch, "--config", config, f"checkpoint_dir={ckpt}", f"output_dir={out}",
        "tokenizer.max_seq_len=128", "dataset._component_=torchtune.datasets.alpaca_dataset", "dataset.source=json",
        f"dataset.data_files={write_alpaca_json(tmp_path / 'data.json')}", "device=cpu", "dtype=fp32", "seed=0",
        "enable_activation_checkpointing=False", "batch_size=2", "gradient_accumulation_steps=1",
        f"optimizer.lr={lr}", "optimizer.fused=False", "lr_scheduler.num_warmup_steps=0",
        "max_steps_per_epoch=4", "log_peak_memory_stats=False",
    ], cwd=tmp_path)
    losses = read_losses(out / "logs")
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert (out / "epoch_0" / "config.json").is_file()
