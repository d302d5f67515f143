"""LoRA fine-tuning of tiny Qwen2, Qwen2.5 and Qwen3 models (byte-level BPE tokenizer from
vocab.json + merges.txt, ChatML), on one process (``recipe_main`` in this process, as ``tune run`` calls
it) and on two (gloo) through the real ``tune run --nproc_per_node 2``."""

import pytest

from tests.recipes._inprocess import run_recipe
from tests.recipes.utils import common_overrides, read_losses, run_tune, write_alpaca_json
from tests.torchtune.models.hf_parity import widen_init
from tests.torchtune.models.qwen2.qwen_reference import TINY, hf_config
from tests.torchtune.models.qwen2.tokenizer_files import QWEN2_5_EXTRA, write_qwen_tokenizer_files

pytestmark = pytest.mark.integration

VOCAB = 640  # 600 BPE ids + Qwen2.5's special tokens, rounded up
STEPS = 6
QWEN3_EXTRA = dict(head_dim=24, q_proj_bias=False, k_proj_bias=False, v_proj_bias=False, q_norm=True, k_norm=True)


def _assets(root, kind: str, tie: bool):
    from transformers import Qwen2ForCausalLM, Qwen3ForCausalLM

    ckpt = root / "base"
    extra = {"head_dim": 24} if kind == "qwen3" else {}
    config = hf_config(kind, tie, **extra)
    config.vocab_size = VOCAB
    model = widen_init({"qwen2": Qwen2ForCausalLM, "qwen3": Qwen3ForCausalLM}[kind](config))
    model.save_pretrained(str(ckpt))
    (root / "tok").mkdir()
    vocab, merges, tokenizer_json, _, _ = write_qwen_tokenizer_files(root / "tok", QWEN2_5_EXTRA)
    return {"ckpt": ckpt, "data": write_alpaca_json(root / "data.json"), "shards": ["model.safetensors"],
            "tokenizer": [f"tokenizer.path={vocab}", f"tokenizer.merges_file={merges}",
                          f"tokenizer.special_tokens_path={tokenizer_json}", "tokenizer.max_seq_len=128"]}


@pytest.fixture(scope="module")
def qwen2_assets(tmp_path_factory):
    return _assets(tmp_path_factory.mktemp("qwen2_assets"), "qwen2", tie=True)


@pytest.fixture(scope="module")
def qwen3_assets(tmp_path_factory):
    return _assets(tmp_path_factory.mktemp("qwen3_assets"), "qwen3", tie=True)


def _args(assets, out, recipe, config, builder, model_type, *extra, launch=()):
    dims = dict(TINY, vocab_size=VOCAB, max_seq_len=128, tie_word_embeddings=True)
    if builder.endswith("qwen3"):
        dims.update(QWEN3_EXTRA)
    return ["run", *launch, recipe, "--config", config, *common_overrides(assets, out), *assets["tokenizer"],
            f"model._component_={builder}", *[f"model.{k}={v}" for k, v in dims.items()],
            "model.lora_attn_modules=[q_proj,v_proj,output_proj]", "model.apply_lora_to_mlp=True",
            "model.lora_rank=8", "model.lora_alpha=16", f"checkpointer.model_type={model_type}",
            "gradient_accumulation_steps=1", "optimizer.lr=1e-2", "optimizer.fused=False",
            "lr_scheduler.num_warmup_steps=0", f"max_steps_per_epoch={STEPS}", *extra]


def _run_in_process(args, cwd):
    """``run_tune(args)`` for a single-device ``["run", recipe, "--config", config, *overrides]``, in-process."""
    assert args[0] == "run" and args[2] == "--config", args
    run_recipe(args[1], args[3], args[4:], cwd=cwd)


def _lowered(losses):
    return len(losses) == STEPS and sum(losses[-2:]) / 2 < losses[0] - 0.2


@pytest.mark.parametrize("config, tokenizer", [
    ("qwen2/0.5B_lora_single_device", "torchtune.models.qwen2.qwen2_tokenizer"),
    ("qwen2_5/0.5B_lora_single_device", "torchtune.models.qwen2_5.qwen2_5_tokenizer"),
])
def test_qwen2_and_qwen2_5_lora_lower_the_loss(qwen2_assets, tmp_path, config, tokenizer):
    args = _args(qwen2_assets, tmp_path, "lora_finetune_single_device", config, "torchtune.models.qwen2.lora_qwen2",
                 "QWEN2", f"tokenizer._component_={tokenizer}", "batch_size=4")
    _run_in_process(args, cwd=tmp_path)
    assert _lowered(read_losses(tmp_path / "logs")), read_losses(tmp_path / "logs")
    assert (tmp_path / "epoch_0" / "adapter" / "adapter_config.json").is_file()


def test_qwen3_lora_lowers_the_loss_and_loads_in_transformers(qwen3_assets, tmp_path):
    from transformers import AutoModelForCausalLM

    args = _args(qwen3_assets, tmp_path, "lora_finetune_single_device", "qwen3/0.6B_lora_single_device",
                 "torchtune.models.qwen3.lora_qwen3", "QWEN3", "batch_size=4")
    _run_in_process(args, cwd=tmp_path)
    assert _lowered(read_losses(tmp_path / "logs")), read_losses(tmp_path / "logs")
    merged, info = AutoModelForCausalLM.from_pretrained(str(tmp_path / "epoch_0"), output_loading_info=True)
    assert not any(info.values()), info


def test_two_process_qwen2_5_lora_lowers_the_loss(qwen2_assets, tmp_path):
    args = _args(qwen2_assets, tmp_path, "lora_finetune_distributed", "qwen2_5/0.5B_lora",
                 "torchtune.models.qwen2.lora_qwen2", "QWEN2", "batch_size=2", launch=("--nproc_per_node", "2"))
    run_tune(args, cwd=tmp_path)
    assert _lowered(read_losses(tmp_path / "logs")), read_losses(tmp_path / "logs")
