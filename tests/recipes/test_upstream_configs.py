"""Our configs agree with torchtune v0.6.1's, key by key, wherever we have the recipe and the model family.

The reference is ``tests/assets/compat/torchtune_v0_6_1_configs.json`` (a copy of the compatibility manifest
``shared/compat/upstream_configs.json``): every config upstream registers, with its keys and values as OmegaConf
loads them. A config counts as ours to match when its recipe is one of our registered recipes and its model family
(the folder of its name, e.g. ``llama3_1`` in ``llama3_1/8B_lora``) is a package under ``torchtune.models``;
family-less configs (``generation``) count when their recipe exists. For each of them:

- our YAML file exists at the same path and is registered under the same recipe;
- every key has the same value and type (``3e-4`` must load as a float, ``00030`` as a string), except the
  differences listed in ``DIFFERENCES`` below, each with its reason; a listed difference that is no longer a
  difference fails too, so the list cannot go stale;
- a user's copy of the upstream config passes ``tune validate`` with our package.
"""

import importlib.util
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from omegaconf import OmegaConf

from torchtune import _recipe_registry
from torchtune.config import validate

MANIFEST_PATH = Path(__file__).resolve().parents[1] / "assets" / "compat" / "torchtune_v0_6_1_configs.json"
MANIFEST: List[Dict[str, Any]] = json.loads(MANIFEST_PATH.read_text())

# --- Deliberate differences: config name -> {dotted key: reason} -------------------------------------------------

_NO_BITSANDBYTES = (
    "bitsandbytes is not one of our dependencies, so the shipped file uses torch.optim.AdamW; the header shows the "
    "one-line override back to upstream's bitsandbytes optimizer"
)

# Written for issue 14 from the manifest: they differ from upstream only here.
_ISSUE_14 = {
    name: {"optimizer._component_": _NO_BITSANDBYTES}
    for name in (
        "code_llama2/7B_full_low_memory",
        "mistral/7B_full_low_memory",
        "llama3/8B_full_single_device",
        "llama3_1/8B_full_single_device",
        "llama3_2/1B_full_single_device",
        "llama3_2/3B_full_single_device",
    )
}
# Written for issue 15 (Phi-3, Phi-4) from the manifest: they differ from upstream only here.
_ISSUE_15 = {
    name: {"optimizer._component_": _NO_BITSANDBYTES}
    for name in ("phi3/mini_full_low_memory", "phi4/14B_full_low_memory")
}

# Written for the Qwen2 / Qwen2.5 issue from the manifest: they differ from upstream only here.
_QWEN = {
    name: {"optimizer._component_": _NO_BITSANDBYTES}
    for name in ("qwen2/1.5B_full_single_device", "qwen2/7B_full_single_device", "qwen2_5/1.5B_full_single_device",
                 "qwen2_5/3B_full_single_device", "qwen2_5/7B_full_single_device")
}

# The Llama2 and family-less configs predate the manifest; they were aligned with it except for these.
_FSDP_DEFAULTS = "our addition: an option of our FSDP2 recipes spelled out with its default value"
_FSDP_SPELLED_OUT = {
    key: _FSDP_DEFAULTS
    for key in ("distributed_backend", "fsdp_cpu_offload", "fsdp_reduce_dtype", "fsdp_reshard_after_forward",
                "custom_sharded_layers")
}
_FSDP_FULL = {
    **_FSDP_SPELLED_OUT,
    "custom_sharded_layers": "our addition: the embedding and output projection sharded as their own FSDP units "
                             "(the recipe's default, null, leaves them in the root unit)",
}
_FUSED_LOSS = {
    "loss._component_": "single-device LoRA uses the fused output projection + cross-entropy (faster on CPU, "
                        "commit aca8960)",
    "loss.chunk_size": "fused loss in 256-row chunks (commit 86fcad9)",
    "group_by_length": "our addition: length-grouped sampler switch, off by default (commit aca8960)",
}
_SAFETENSORS = (
    "our Llama2 inference configs read the safetensors shards rather than the .bin ones: the file names "
    "FullModelHFCheckpointer writes by default, so checkpoint_dir can point at a fine-tuning run's epoch_N folder"
)
_LLAMA2 = {
    "llama2/7B_full_low_memory": {"optimizer._component_": _NO_BITSANDBYTES},
    "llama2/7B_full": _FSDP_FULL,
    "llama2/13B_full": _FSDP_FULL,
    "llama2/7B_lora_single_device": _FUSED_LOSS,
    "llama2/7B_qlora_single_device": {**_FUSED_LOSS, "low_cpu_ram": "not read by our recipe"},
    "llama2/13B_qlora_single_device": _FUSED_LOSS,
    "llama2/7B_lora": _FSDP_SPELLED_OUT,
    "llama2/13B_lora": _FSDP_SPELLED_OUT,
    "llama2/70B_lora": {
        **_FSDP_SPELLED_OUT,
        "checkpointer.adapter_checkpoint": "our addition: null, as the default",
    },
    "llama2/7B_qlora": {
        **_FSDP_SPELLED_OUT,
        "dataset.train_on_input": "left to alpaca_dataset's default (also True)",
        "fsdp.cpu_offload": "not read by our recipe (fsdp_cpu_offload is)",
    },
    "generation": {
        "checkpointer.checkpoint_files": _SAFETENSORS,
        "compile": "our addition: torch.compile switch, off",
        "top_p": "our addition: nucleus sampling, off",
        "tokenizer.prompt_template": "left to llama2_tokenizer's default, Llama2ChatTemplate, so a chat prompt gets "
                                    "the [INST] format (tests/recipes/test_generate.py); upstream's null disables it",
    },
    "eleuther_evaluation": {
        "checkpointer.checkpoint_files": _SAFETENSORS,
        **{
            f"{section}.{key}": "our addition: built-in evaluations on local files (docs/evaluation.md)"
            for section, keys in (("perplexity", ("data_files", "column")),
                                  ("exact_match", ("data_files", "input_column", "target_column",
                                                   "max_new_tokens", "chat_format")))
            for key in keys
        },
        "task_include_path": "our addition: custom lm_eval task folders",
        "task_include_defaults": "our addition: skip indexing lm_eval's built-in tasks",
    },
    "quantization": {"checkpointer.checkpoint_files": _SAFETENSORS},
}

# Written for the PPO part of the RLHF issue from the manifest: it differs from upstream only here.
_PPO = {"mistral/7B_full_ppo_low_memory": {"optimizer._component_": _NO_BITSANDBYTES}}

DIFFERENCES: Dict[str, Dict[str, str]] = {**_ISSUE_14, **_ISSUE_15, **_QWEN, **_LLAMA2, **_PPO}


def _family(config_name: str) -> str:
    return config_name.split("/")[0] if "/" in config_name else ""


OUR_RECIPES = {r.name for r in _recipe_registry.get_all_recipes()}


def _in_scope(entry: Dict[str, Any]) -> bool:
    if entry["recipe"] not in OUR_RECIPES:
        return False
    family = _family(entry["config"])
    return family == "" or importlib.util.find_spec(f"torchtune.models.{family}") is not None


IN_SCOPE = [e for e in MANIFEST if _in_scope(e)]


def _flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    """Dotted key -> leaf value; lists are leaves (compared whole)."""
    if isinstance(node, dict) and node:
        out: Dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def _same(a: Any, b: Any) -> bool:
    # ``True == 1`` and ``1 == 1.0`` in Python; a YAML that loads the wrong type must still fail.
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


_MISSING = "<missing>"


def _differences(entry: Dict[str, Any]) -> Dict[str, tuple]:
    ours = OmegaConf.to_container(OmegaConf.load(_recipe_registry.CONFIGS_DIR / entry["file"]), resolve=False)
    theirs, mine = _flatten(entry["values"]), _flatten(ours)
    return {
        key: (theirs.get(key, _MISSING), mine.get(key, _MISSING))
        for key in sorted(set(theirs) | set(mine))
        if not _same(theirs.get(key, _MISSING), mine.get(key, _MISSING))
    }


def test_scope_covers_the_issue_14_families_once_they_exist():
    # Guards the scope rule itself: Llama2 and the family-less configs are always in scope.
    names = {e["config"] for e in IN_SCOPE}
    assert {"llama2/7B_lora", "generation", "eleuther_evaluation", "quantization"} <= names
    assert not any(e["recipe"].startswith("dev/") or "vision" in e["config"] for e in IN_SCOPE)


@pytest.mark.parametrize("entry", IN_SCOPE, ids=[e["config"] for e in IN_SCOPE])
def test_config_exists_and_is_registered_under_its_recipe(entry):
    assert (_recipe_registry.CONFIGS_DIR / entry["file"]).is_file(), f"no recipes/configs/{entry['file']}"
    recipe = _recipe_registry.get_recipe(entry["recipe"])
    assert recipe is not None
    assert entry["config"] in [c.name for c in recipe.configs], f"{entry['config']} not registered"


@pytest.mark.parametrize("entry", IN_SCOPE, ids=[e["config"] for e in IN_SCOPE])
def test_values_match_upstream(entry):
    if not (_recipe_registry.CONFIGS_DIR / entry["file"]).is_file():
        pytest.skip("file missing (reported by test_config_exists_and_is_registered_under_its_recipe)")
    allowed = DIFFERENCES.get(entry["config"], {})
    found = _differences(entry)
    unexpected = {key: diff for key, diff in found.items() if key not in allowed}
    assert not unexpected, "\n".join(f"{k}: upstream={u!r} ours={o!r}" for k, (u, o) in unexpected.items())
    stale = sorted(set(allowed) - set(found))
    assert not stale, f"listed as differences but equal to upstream now (remove them from DIFFERENCES): {stale}"


def test_every_listed_difference_names_a_manifest_config():
    names = {e["config"] for e in MANIFEST}
    assert set(DIFFERENCES) <= names


@pytest.mark.parametrize("entry", IN_SCOPE, ids=[e["config"] for e in IN_SCOPE])
def test_users_copy_of_upstream_config_validates(entry):
    values = json.loads(json.dumps(entry["values"]))
    optimizer = values.get("optimizer") or {}
    if str(optimizer.get("_component_", "")).startswith("bitsandbytes.") and not importlib.util.find_spec(
        "bitsandbytes"
    ):
        # The user would need bitsandbytes installed; everything else in the file must still be ours to check.
        optimizer["_component_"] = "torch.optim.AdamW"
    validate(OmegaConf.create(values))
