"""End-to-end runs of lora_finetune_single_device on a tiny Llama: the shared 8-step run through the real
`tune` CLI, the others in this process (the same recipe_main, without a subprocess's start-up)."""

import pytest
import torch

from tests.recipes._inprocess import run_recipe
from tests.recipes.utils import RECIPE_MODEL, common_overrides, make_assets, model_overrides, read_losses, run_tune

pytestmark = pytest.mark.integration

CONFIG = "llama2/7B_lora_single_device"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("lora_assets"))


def _overrides(assets, out, *extra):
    return [*common_overrides(assets, out), *model_overrides(), "model.lora_attn_modules=[q_proj,v_proj,output_proj]",
            "model.apply_lora_to_mlp=True", "model.lora_rank=8", "model.lora_alpha=16", "batch_size=4",
            "gradient_accumulation_steps=1", "optimizer.lr=1e-2", "optimizer.fused=False",
            "lr_scheduler.num_warmup_steps=0", *extra]


def _lora_args(assets, out, *extra):
    return ["run", "lora_finetune_single_device", "--config", CONFIG, *_overrides(assets, out, *extra)]


def _run(assets, out, *extra, cwd=None):
    run_recipe("lora_finetune_single_device", CONFIG, _overrides(assets, out, *extra), cwd=cwd or out)


@pytest.fixture(scope="module")
def lora_run(assets, tmp_path_factory):
    """One uninterrupted 8-step LoRA run with a mid-epoch save at step 4 (reused by several tests)."""
    out = tmp_path_factory.mktemp("lora_run")
    run_tune(_lora_args(assets, out, "max_steps_per_epoch=8", "save_every_n_steps=4"), cwd=out)
    return out


def test_lora_loss_decreases(lora_run):
    losses = read_losses(lora_run / "logs")
    assert len(losses) == 8
    assert sum(losses[-3:]) / 3 < losses[0] - 0.2, losses


def test_resume_mid_epoch_reproduces_the_loss_sequence(assets, lora_run, tmp_path):
    # Copy the output of the uninterrupted run as it was at step 4: the step_4 folder and its recipe state.
    import shutil

    out = tmp_path / "resumed"
    out.mkdir()
    shutil.copytree(lora_run / "step_4", out / "step_4")
    shutil.copytree(lora_run / "recipe_state", out / "recipe_state")
    state = torch.load(out / "recipe_state" / "recipe_state.pt", weights_only=True)
    # The run kept going after step 4 and its final epoch save does not write recipe state, so
    # the state on disk is still the one written together with step_4.
    assert state["steps_run"] == 4
    _run(assets, out, "max_steps_per_epoch=8", "save_every_n_steps=4", "resume_from_checkpoint=True")
    full = read_losses(lora_run / "logs")
    resumed = read_losses(out / "logs")
    assert resumed == full[4:], (resumed, full)


def _our_model_from_output(folder, lora=True):
    """Our llama2 loaded from the run's merged HF-layout output."""
    from torchtune.models.llama2 import llama2
    from torchtune.training import FullModelHFCheckpointer

    ckpt = FullModelHFCheckpointer(str(folder), ["model.safetensors.index.json"], "LLAMA2", str(folder / "x"))
    model = llama2(**RECIPE_MODEL).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"])
    return model


def test_outputs_load_in_transformers_and_peft(assets, lora_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from torchtune.models.convert_weights import hf_to_tune
    from torchtune.models.llama2 import lora_llama2
    from torchtune.modules.peft import get_merged_lora_ckpt

    epoch_dir = lora_run / "epoch_0"
    tokens = torch.randint(0, RECIPE_MODEL["vocab_size"], (2, 24))

    # Our LoRA model, unmerged: base weights + the trained adapter as the recipe saved it.
    base = AutoModelForCausalLM.from_pretrained(str(assets["ckpt"])).eval()
    ours = lora_llama2(["q_proj", "v_proj", "output_proj"], apply_lora_to_mlp=True, lora_rank=8, lora_alpha=16, **RECIPE_MODEL).eval()
    dims = dict(num_heads=RECIPE_MODEL["num_heads"], num_kv_heads=RECIPE_MODEL["num_kv_heads"],
                dim=RECIPE_MODEL["embed_dim"])
    ours.load_state_dict(hf_to_tune(base.state_dict(), **dims), strict=False)
    ours.load_state_dict(torch.load(epoch_dir / "adapter" / "adapter_model.pt", weights_only=True), strict=False)
    with torch.no_grad():
        expected = ours(tokens)
        # Merging equals the unmerged forward.
        merged = _our_model_from_output(epoch_dir)
        torch.testing.assert_close(merged(tokens), expected, atol=1e-5, rtol=1e-5)
        merged_sd = get_merged_lora_ckpt({k: v for k, v in ours.state_dict().items()}, rank=8, alpha=16)
        for k, v in merged.state_dict().items():
            torch.testing.assert_close(v, merged_sd[k], atol=1e-6, rtol=1e-6)

        # The merged folder loads as is in transformers (with peft installed: no double-applied adapter).
        hf = AutoModelForCausalLM.from_pretrained(str(epoch_dir)).eval()
        torch.testing.assert_close(hf(tokens).logits, expected, atol=1e-5, rtol=1e-5)

        # Base model + the PEFT adapter folder gives the same model.
        peft_model = PeftModel.from_pretrained(base, str(epoch_dir / "adapter")).eval()
        torch.testing.assert_close(peft_model(tokens).logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["qlora", "dora"])
def test_qlora_and_dora_lower_the_loss(assets, tmp_path, variant):
    extra = ["model.quantize_base=True"] if variant == "qlora" else ["model.use_dora=True"]
    _run(assets, tmp_path, "max_steps_per_epoch=6", *extra)
    losses = read_losses(tmp_path / "logs")
    assert len(losses) == 6
    assert sum(losses[-2:]) / 2 < losses[0] - 0.1, losses
    assert (tmp_path / "epoch_0" / "adapter" / "adapter_config.json").is_file()


def test_nan_loss_stops_with_the_step_and_saves_nothing(assets, tmp_path):
    from torchtune.training._grad_accumulation import NonFiniteLossError

    with pytest.raises(NonFiniteLossError) as err:
        _run(assets, tmp_path, "max_steps_per_epoch=6", "optimizer.lr=1e30", "clip_grad_norm=null")
    message = str(err.value)
    assert "step" in message.lower() and ("nan" in message.lower() or "finite" in message.lower()), message
    assert not (tmp_path / "epoch_0").exists()


def test_bf16_on_cpu_lowers_the_loss_like_fp32(assets, lora_run, tmp_path):
    """bf16 end to end on CPU (weights, activations, adapters): same data and initialisation as the
    fp32 run, so the two loss curves differ by bf16 rounding only."""
    _run(assets, tmp_path, "max_steps_per_epoch=8", "dtype=bf16", "optimizer.fused=True")
    losses, fp32 = read_losses(tmp_path / "logs"), read_losses(lora_run / "logs")
    assert len(losses) == len(fp32) == 8
    assert sum(losses[-3:]) / 3 < losses[0] - 0.2, losses
    assert max(abs(a - b) for a, b in zip(losses, fp32)) < 0.05, (losses, fp32)


def test_group_by_length_trains_and_resumes_mid_epoch_exactly(assets, tmp_path):
    import shutil

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    args = ("max_steps_per_epoch=4", "save_every_n_steps=2", "group_by_length=True")
    _run(assets, full, *args, cwd=tmp_path)
    resumed.mkdir()
    shutil.copytree(full / "step_2", resumed / "step_2")
    shutil.copytree(full / "recipe_state", resumed / "recipe_state")
    # The state on disk is the step-2 one only if the final save leaves it alone (as in the test above).
    assert torch.load(resumed / "recipe_state" / "recipe_state.pt", weights_only=True)["steps_run"] == 2
    _run(assets, resumed, *args, "resume_from_checkpoint=True", cwd=tmp_path)
    losses = read_losses(full / "logs")
    assert len(losses) == 4 and read_losses(resumed / "logs") == losses[2:]


def test_group_by_length_refuses_packed_samples(assets, tmp_path):
    with pytest.raises(ValueError, match="group_by_length=True needs unpacked samples"):
        _run(assets, tmp_path, "max_steps_per_epoch=1", "group_by_length=True", "dataset.packed=True",
             "tokenizer.max_seq_len=64")
