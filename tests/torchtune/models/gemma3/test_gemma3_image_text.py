"""Gemma 3 4B-27B checkpoints are ``Gemma3ForConditionalGeneration`` image-text models. A tiny
random-init one (3 text layers, a one-layer SigLIP tower) saved by transformers loads through
``FullModelHFCheckpointer`` as its text decoder (logits equal transformers' on text), saves as a
``Gemma3ForCausalLM`` folder that ``AutoModelForCausalLM`` loads, and a LoRA adapter saved from it
loads in PEFT onto that text-only model."""

import json
import logging
from pathlib import Path
from typing import List

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.torchtune.models.gemma.gemma_reference import WINDOW, hf_dims, save_reference, tokens
from tests.torchtune.models.gemma3.test_gemma3 import DIMS, ROPE
from tests.torchtune.models.hf_parity import saved_hf_state_dict
from torchtune._errors import CheckpointError
from torchtune.models.gemma3 import gemma3, lora_gemma3
from torchtune.training import ADAPTER_CONFIG, ADAPTER_KEY, MODEL_KEY, FullModelHFCheckpointer

# A one-layer SigLIP tower on 2x2 patches, pooled to 4 image tokens. Gemma3Config's image-token
# ids (262144 and up) lie outside the tiny vocabulary, so text-only input never takes the image path.
VISION = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, image_size=28,
              patch_size=14)
IMAGE_SIDE = ("vision_tower.", "multi_modal_projector.")


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _load(folder: Path, files, out: Path):
    """Our checkpointer on ``folder``: (checkpointer, torchtune state dict, info messages logged)."""
    handler, logger = _Messages(), logging.getLogger("torchtune")
    logger.addHandler(handler)
    try:
        ckpt = FullModelHFCheckpointer(str(folder), files, "GEMMA3", str(out))
        sd = ckpt.load_checkpoint()[MODEL_KEY]
    finally:
        logger.removeHandler(handler)
    return ckpt, sd, handler.messages


@pytest.fixture(scope="module")
def image_text(tmp_path_factory):
    """(reference model, folder in the older ``language_model.model.*`` layout that save_pretrained
    writes, folder in the ``model.language_model.*`` layout split in two shards)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    root = tmp_path_factory.mktemp("gemma3_image_text")
    text = hf_dims(num_hidden_layers=3, rope_parameters=ROPE, sliding_window=WINDOW, sliding_window_pattern=3,
                   query_pre_attn_scalar=20)
    text.pop("attn_implementation")
    config = Gemma3Config(text_config=text, vision_config=VISION, mm_tokens_per_image=4,
                          attn_implementation="eager")
    ref = save_reference(root / "old", Gemma3ForConditionalGeneration, config)
    # Newer transformers' in-memory names, as a two-shard checkpoint with an index.
    saved = load_file(str(root / "old" / "model.safetensors"))
    renamed = {("model." + k.replace("language_model.model.", "language_model.", 1)
                if not k.startswith("lm_head.") else k): v for k, v in saved.items()}
    new = root / "new"
    new.mkdir()
    (new / "config.json").write_text((root / "old" / "config.json").read_text())
    keys = sorted(renamed)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({k: renamed[k].contiguous() for k in part}, str(new / name))
    (new / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: name for name, part in shards.items() for k in part}}))
    return ref, root / "old", new


def _left_out(folder: Path, prefix: str, ref) -> set:
    """The stored keys that are not the text decoder's (its Gemma3TextModel keys under ``prefix``)."""
    stored = set(saved_hf_state_dict(folder))
    text_keys = {f"{prefix}.{k}" for k in ref.model.language_model.state_dict()}
    assert text_keys <= stored
    return stored - text_keys


def test_text_decoder_logits_equal_transformers(image_text, tmp_path):
    ref, old, new = image_text
    _, sd, messages = _load(old, ["model.safetensors"], tmp_path / "old")
    ours = gemma3(**DIMS).eval()
    ours.load_state_dict(sd, strict=True)
    x = tokens(1)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(input_ids=x).logits, atol=1e-5, rtol=1e-5)

    # The newer names, in two shards, give the same tensors.
    _, sd_new, messages_new = _load(new, ["model.safetensors.index.json"], tmp_path / "new")
    assert sd_new.keys() == sd.keys() and all(torch.equal(sd_new[k], sd[k]) for k in sd)

    # What was left out is exactly the image side: every stored key is either the text decoder's
    # or under the vision-tower / projector prefixes, and the log line counts the latter.
    for folder, prefix, image_prefixes, logged in [
        (old, "language_model.model", IMAGE_SIDE, messages),
        (new, "model.language_model", tuple("model." + p for p in IMAGE_SIDE), messages_new),
    ]:
        image_keys = _left_out(folder, prefix, ref)
        assert all(k.startswith(image_prefixes) for k in image_keys)
        assert all(any(k.startswith(p) for k in image_keys) for p in image_prefixes)
        (note,) = [m for m in logged if "left out" in m]
        assert f"left out {len(image_keys)} tensors of the vision tower and multi-modal projector" in note


@pytest.fixture(scope="module")
def text_only(image_text, tmp_path_factory):
    """The image-text checkpoint loaded and saved back through our checkpointer: its text decoder alone."""
    _, old, _ = image_text
    out = tmp_path_factory.mktemp("gemma3_text_only")
    ckpt, sd, _ = _load(old, ["model.safetensors"], out)
    # With recipe state, so that a resumed run can be checked to read this folder back as it is.
    ckpt.save_checkpoint({MODEL_KEY: sd, "epochs_run": 1}, epoch=0, intermediate_checkpoint=True)
    return out / "epoch_0"


def test_resume_reads_the_saved_text_decoder(image_text, text_only):
    _, old, _ = image_text
    loaded = FullModelHFCheckpointer(str(old), ["model.safetensors"], "GEMMA3", str(text_only.parent),
                                     resume_from_checkpoint=True).load_checkpoint()
    _, base, _ = _load(old, ["model.safetensors"], text_only.parent / "unused")
    assert loaded["epochs_run"] == 1
    assert loaded[MODEL_KEY].keys() == base.keys()
    assert all(torch.equal(loaded[MODEL_KEY][k], base[k]) for k in base)


def test_saved_text_decoder_loads_in_auto_model_for_causal_lm(image_text, text_only):
    from transformers import AutoModelForCausalLM, Gemma3ForCausalLM

    ref, old, _ = image_text
    config = json.loads((text_only / "config.json").read_text())
    assert config["model_type"] == "gemma3_text" and config["architectures"] == ["Gemma3ForCausalLM"]
    assert "vision_config" not in config and "text_config" not in config
    assert config["hidden_size"] == 64 and config["layer_types"] == ref.config.text_config.layer_types
    saved = saved_hf_state_dict(text_only)
    assert not any(k.startswith(IMAGE_SIDE) or "language_model" in k for k in saved)
    back, info = AutoModelForCausalLM.from_pretrained(str(text_only), output_loading_info=True, dtype=torch.float32,
                                                      attn_implementation="eager")
    assert isinstance(back, Gemma3ForCausalLM)
    assert not any(info.values()), info  # strict: nothing missing, unexpected or mis-shaped
    x = tokens(2)
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(x).logits, ref(input_ids=x).logits, atol=1e-5, rtol=1e-5)


def test_lora_adapter_loads_in_peft_on_the_text_decoder(image_text, text_only, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, old, _ = image_text
    ckpt, sd, _ = _load(old, ["model.safetensors"], tmp_path / "out")
    modules = ["q_proj", "k_proj", "v_proj", "output_proj"]
    ours = lora_gemma3(modules, True, **DIMS, lora_rank=4, lora_alpha=8).eval()
    ours.load_state_dict(sd, strict=False)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if "lora_b" in name:
                p.normal_(0.0, 0.05)
    adapter = {k: v for k, v in ours.state_dict().items() if "lora_" in k}
    ckpt.save_checkpoint({ADAPTER_KEY: adapter, ADAPTER_CONFIG: {"r": 4, "lora_alpha": 8, "target_modules": modules}},
                         epoch=0, adapter_only=True)
    adapter_dir = tmp_path / "out" / "epoch_0" / "adapter"
    peft_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert peft_config["target_modules"] == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                    "down_proj"])
    base = AutoModelForCausalLM.from_pretrained(str(text_only), dtype=torch.float32, attn_implementation="eager")
    x = tokens(3)
    with torch.no_grad():
        expected, without = ours(x), base.eval()(x).logits
        assert (expected - without).abs().max() > 1e-3  # the adapters matter
        adapted = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
        torch.testing.assert_close(adapted(x).logits, expected, atol=1e-5, rtol=1e-5)


def test_unexpected_key_in_an_image_text_checkpoint_is_named(image_text, tmp_path):
    _, old, _ = image_text
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_text((old / "config.json").read_text())
    sd = load_file(str(old / "model.safetensors"))
    sd["audio_tower.proj.weight"] = torch.zeros(2, 2)
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        _load(folder, ["model.safetensors"], tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and "audio_tower.proj.weight" in message and "model.safetensors" in message


def test_image_keys_in_a_text_only_checkpoint_still_raise(image_text, tmp_path):
    _, old, _ = image_text
    folder = tmp_path / "text"
    folder.mkdir()
    config = json.loads((old / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config["text_config"], model_type="gemma3_text")))
    save_file({"vision_tower.post_layernorm.weight": torch.ones(4)}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="vision_tower.post_layernorm.weight"):
        _load(folder, ["model.safetensors"], tmp_path / "out")


def test_image_text_config_without_text_config_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gemma3", "architectures": ["x"]}))
    with pytest.raises(CheckpointError, match="config.json: .*no 'text_config'"):
        FullModelHFCheckpointer(str(tmp_path), [], "GEMMA3", str(tmp_path / "out"))
