"""``tune run`` with the ``hf_decoder/*`` configs on architectures no family of ours builds: the
user's command (a checkpoint folder and ``checkpoint_dir=``) fine-tunes and the loss goes down.

One architecture goes through the real ``tune run`` CLI; the others call the same ``recipe_main`` in
this process, and the two 2-rank runs share one ``tune run --nproc_per_node 2`` launch
(tests/recipes/_inprocess.py): process start-up, not the few steps, is most of a run's cost."""

import pytest

from tests.recipes._inprocess import run_on_two_ranks, run_recipe
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


# Through the real CLI (the others run in-process).
CLI_ARCH = "gpt_neox"


def _overrides(tmp_path, ckpt, out, batch_size, lr, steps):
    return [f"checkpoint_dir={ckpt}", f"output_dir={out}", "tokenizer.max_seq_len=128",
            "dataset._component_=torchtune.datasets.alpaca_dataset", "dataset.source=json",
            f"dataset.data_files={write_alpaca_json(tmp_path / 'data.json')}", "device=cpu", "dtype=fp32", "seed=0",
            "enable_activation_checkpointing=False", f"batch_size={batch_size}", "gradient_accumulation_steps=1",
            f"optimizer.lr={lr}", "optimizer.fused=False", "lr_scheduler.num_warmup_steps=0",
            f"max_steps_per_epoch={steps}", "log_peak_memory_stats=False"]


@pytest.mark.parametrize("model_type", sorted(ARCHS))
def test_lora_finetune_of_a_non_family_architecture_lowers_the_loss(model_type, tmp_path):
    ckpt = tmp_path / "model"
    _checkpoint(ckpt, model_type, ARCHS[model_type])
    out = tmp_path / "out"
    overrides = _overrides(tmp_path, ckpt, out, batch_size=4, lr="1e-2", steps=STEPS)
    if model_type == CLI_ARCH:
        run_tune(["run", "lora_finetune_single_device", "--config", "hf_decoder/lora_single_device", *overrides],
                 cwd=tmp_path)
    else:
        run_recipe("lora_finetune_single_device", "hf_decoder/lora_single_device", overrides, cwd=tmp_path)
    losses = read_losses(out / "logs")
    assert len(losses) == STEPS, losses
    assert sum(losses[-2:]) / 2 < losses[0] - 0.2, losses
    assert (out / "epoch_0" / "config.json").is_file() and list((out / "epoch_0").glob("*.safetensors"))


# id -> (recipe, config, architecture); full training uses lr 1e-3, LoRA 1e-2.
TWO_RANKS = {
    "lora-2-ranks": ("lora_finetune_distributed", "hf_decoder/lora", "gpt_neox"),
    "full-2-ranks": ("full_finetune_distributed", "hf_decoder/full", "gpt2"),
}
ONE_DEVICE = {
    "qlora": ("lora_finetune_single_device", "hf_decoder/qlora_single_device", "starcoder2"),
    "full": ("full_finetune_single_device", "hf_decoder/full_single_device", "gpt_neox"),
}


def _short_run_overrides(tmp_path, config, model_type):
    ckpt = tmp_path / "model"
    _checkpoint(ckpt, model_type, ARCHS[model_type])
    return _overrides(tmp_path, ckpt, tmp_path / "out", batch_size=2, lr="1e-3" if "full" in config else "1e-2",
                      steps=4)


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    """Both 2-rank runs, one after the other in a single launch: id -> its folder."""
    root = tmp_path_factory.mktemp("hf_decoder_two_ranks")
    folders, runs = {}, []
    for run_id, (recipe, config, model_type) in TWO_RANKS.items():
        folders[run_id] = root / run_id
        folders[run_id].mkdir()
        runs.append([recipe, config, _short_run_overrides(folders[run_id], config, model_type)])
    run_on_two_ranks(runs, root)
    return folders


def _check_short_run(folder):
    losses = read_losses(folder / "out" / "logs")
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert (folder / "out" / "epoch_0" / "config.json").is_file()


@pytest.mark.parametrize("run_id", sorted(TWO_RANKS))
def test_distributed_configs_train(run_id, two_rank_runs):
    _check_short_run(two_rank_runs[run_id])


@pytest.mark.parametrize("run_id", [
    "qlora",
    # Full training on one device: the 2-rank full run covers the recipe's hf_decoder path.
    pytest.param("full", marks=pytest.mark.slow),
])
def test_qlora_and_full_single_device_configs_train(run_id, tmp_path):
    recipe, config, model_type = ONE_DEVICE[run_id]
    run_recipe(recipe, config, _short_run_overrides(tmp_path, config, model_type), cwd=tmp_path)
    _check_short_run(tmp_path)
