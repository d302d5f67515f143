"""Every model family package is registered everywhere docs/model_stack.md says a family registers.

A family ``torchtune/models/<family>/`` needs: configs in ``recipes/configs/<family>/``, each one
registered with a recipe in ``torchtune/_recipe_registry.py``; models built from its own package;
and a checkpointer ``model_type`` with a Hugging Face conversion (``ModelType`` + ``_convert.py``).
"""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

import torchtune.models
from torchtune._recipe_registry import CONFIGS_DIR, get_all_configs, get_all_recipes
from torchtune.training.checkpointing._convert import get_family
from torchtune.training.checkpointing._model_type import resolve_model_type

MODELS_DIR = Path(torchtune.models.__file__).parent
# Packages under models/ that are not a model family, with why.
NOT_FAMILIES = {
    "gguf": "tokenizers read from GGUF files; the models a GGUF file holds are built by the llama3_2 family "
            "(training.gguf_model_config)",
}
FAMILIES = sorted(p.name for p in MODELS_DIR.iterdir()
                  if (p / "__init__.py").is_file() and not p.name.startswith("_") and p.name not in NOT_FAMILIES)


def test_there_are_families():
    assert "llama2" in FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_registered(family):
    folder = CONFIGS_DIR / family
    yamls = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    assert yamls, f"torchtune.models.{family} has no configs in recipes/configs/{family}/"
    registered = {c.file_path for c in get_all_configs()}
    recipes_of = {c.file_path: r.name for r in get_all_recipes() for c in r.configs}
    model_types = set()
    for path in yamls:
        rel = f"{family}/{path.name}"
        assert rel in registered, f"{rel} is not registered with any recipe in torchtune/_recipe_registry.py"
        assert rel in recipes_of, f"{rel} is registered, but its recipe is not installed"
        cfg = OmegaConf.load(path)
        model = cfg.get("model") or cfg.get("policy_model")  # PPO configs name their policy policy_model
        component = model._component_
        assert component.startswith(f"torchtune.models.{family}."), f"{rel}: model {component} is not from {family}"
        if "checkpointer" in cfg and cfg.checkpointer.get("model_type") is not None:
            model_types.add(str(cfg.checkpointer.model_type))
    assert model_types, f"no config of {family} names a checkpointer model_type"
    for name in model_types:
        get_family(resolve_model_type(name))  # raises if the model type has no HF conversion


def test_every_listed_non_family_package_exists():
    assert all((MODELS_DIR / name / "__init__.py").is_file() for name in NOT_FAMILIES)
