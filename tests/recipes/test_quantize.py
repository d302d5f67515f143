"""`tune run quantize` writes int8 / int4 checkpoints that reload (weights_only) into a quantized model
skeleton, through `tune run generate` or the torchtune checkpointer; the generated text equals that
of an in-process quantize-and-generate reference."""

import pytest
import torch

from tests.recipes.test_generate import generate_args, N_NEW
from tests.recipes.utils import make_assets, model_overrides, RECIPE_MODEL, run_tune
from torchtune.generation import generate
from torchtune.models.llama2 import llama2, llama2_tokenizer
from torchtune.training import FullModelHFCheckpointer, FullModelTorchTuneCheckpointer
from torchtune.training.quantization import (
    Int4WeightOnlyQuantizer,
    Int8WeightOnlyQuantizer,
    validate_quantized_state_dict,
)

pytestmark = pytest.mark.integration

PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("quantize_assets"))


def _quantize(assets, out, name, *extra):
    run_tune(["run", "quantize", "--config", "quantization", f"output_dir={out}",
              *model_overrides("torchtune.models.llama2.llama2"), f"checkpointer.checkpoint_dir={assets['ckpt']}",
              "checkpointer.checkpoint_files=[model.safetensors.index.json]", "device=cpu", "dtype=fp32",
              f"quantizer._component_=torchtune.training.quantization.{name}", *extra], cwd=out)


def _greedy_text(model, assets):
    tokenizer = llama2_tokenizer(str(assets["ckpt"] / "tokenizer.model"))
    prompt = torch.tensor(tokenizer.encode(PROMPT, add_bos=True, add_eos=False))
    model.setup_caches(batch_size=1, dtype=torch.float32, decoder_max_seq_len=64)
    tokens, _ = generate(model, prompt, max_generated_tokens=N_NEW, temperature=0,
                         pad_id=tokenizer.pad_id, stop_tokens=tokenizer.stop_tokens)
    return tokenizer.decode(tokens[0].tolist())


def _reference_text(assets, quantizer, tmp_path):
    """Quantize the float checkpoint in this process and generate from it."""
    ckpt = FullModelHFCheckpointer(str(assets["ckpt"]), ["model.safetensors.index.json"], "LLAMA2",
                                   str(tmp_path / "reference"))
    model = llama2(**RECIPE_MODEL).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"])
    return _greedy_text(quantizer.quantize(model), assets)


def test_int8_checkpoint_reloads_in_the_generate_recipe(assets, tmp_path):
    # int8 weight-only takes no group size: drop the one the shipped config sets for its 8da4w quantizer.
    _quantize(assets, tmp_path, "Int8WeightOnlyQuantizer", "~quantizer.groupsize")
    saved = tmp_path / "model-8w.pt"
    assert saved.is_file()
    # A fresh `tune` process: weights_only loading must accept the torchao tensors. Also covers
    # a plain-text prompt decoded without a KV cache.
    proc = run_tune(generate_args(assets, tmp_path, "temperature=0", f"prompt={PROMPT}", "enable_kv_cache=False",
                                  "quantizer._component_=torchtune.training.quantization.Int8WeightOnlyQuantizer",
                                  "checkpointer._component_=torchtune.training.FullModelTorchTuneCheckpointer",
                                  f"checkpointer.checkpoint_dir={tmp_path}",
                                  f"checkpointer.checkpoint_files=[{saved.name}]"),
                    cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert "quantized with Int8WeightOnlyQuantizer" in log
    assert f"\n{_reference_text(assets, Int8WeightOnlyQuantizer(), tmp_path)}\n" in log


def test_int4_checkpoint_reloads_through_the_torchtune_checkpointer(assets, tmp_path):
    _quantize(assets, tmp_path, "Int4WeightOnlyQuantizer", "quantizer.groupsize=32")
    # What the generate recipe does, in this process: quantize a fresh model, load the file.
    state_dict = FullModelTorchTuneCheckpointer(str(tmp_path), ["model-4w.pt"], "LLAMA2",
                                                str(tmp_path / "reload")).load_checkpoint()["model"]
    model = Int4WeightOnlyQuantizer(groupsize=32).quantize(llama2(**RECIPE_MODEL).eval())
    validate_quantized_state_dict(model, state_dict)
    model.load_state_dict(state_dict)
    assert _greedy_text(model, assets) == _reference_text(assets, Int4WeightOnlyQuantizer(groupsize=32), tmp_path)
