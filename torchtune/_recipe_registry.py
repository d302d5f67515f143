"""The built-in recipes and configs that ship with the package.

Recipe scripts live in the top-level ``recipes`` package (``recipes/<name>.py``) and configs in
``recipes/configs/<family>/<name>.yaml``; both are installed next to ``torchtune`` in
site-packages, so a non-editable install finds them too. Entries whose file is not present in
this installation are hidden from every lookup, so the CLI only ever offers files it can copy
or run.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

# ``recipes`` is installed as a sibling of ``torchtune`` (see pyproject.toml), both in a source
# checkout and in site-packages.
RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
CONFIGS_DIR = RECIPES_DIR / "configs"


@dataclass
class Config:
    """A built-in config.

    Args:
        name (str): the name users type, e.g. ``"llama2/7B_lora"``.
        file_path (str): path relative to ``recipes/configs``, e.g. ``"llama2/7B_lora.yaml"``.
    """

    name: str
    file_path: str

    @property
    def path(self) -> Path:
        """Path: absolute location of the YAML file in this installation."""
        return CONFIGS_DIR / self.file_path


@dataclass
class Recipe:
    """A built-in recipe script and the configs written for it.

    Args:
        name (str): the name users type, e.g. ``"lora_finetune_single_device"``.
        file_path (str): path relative to ``recipes/``, e.g. ``"lora_finetune_single_device.py"``.
        configs (List[Config]): configs meant for this recipe.
        supports_distributed (bool): whether the recipe may run on several processes (torchrun).
    """

    name: str
    file_path: str
    configs: List[Config] = field(default_factory=list)
    supports_distributed: bool = False

    @property
    def path(self) -> Path:
        """Path: absolute location of the recipe script in this installation."""
        return RECIPES_DIR / self.file_path


# Configs by model family, then by recipe: ``recipes/configs/<family>/<name>.yaml``. A family adds
# one block here (see docs/model_stack.md, "Adding a model family").
_FAMILY_CONFIGS: Dict[str, Dict[str, List[str]]] = {
    "llama2": {
        "full_finetune_single_device": ["7B_full_low_memory"],
        "full_finetune_distributed": ["7B_full", "13B_full"],
        "lora_finetune_single_device": ["7B_lora_single_device", "7B_qlora_single_device", "13B_qlora_single_device"],
        "lora_finetune_distributed": ["7B_lora", "13B_lora", "70B_lora", "7B_qlora", "70B_qlora"],
        "qat_distributed": ["7B_qat_full"],
        "lora_dpo_single_device": ["7B_lora_dpo_single_device"],
        "lora_dpo_distributed": ["7B_lora_dpo"],
    },
    "code_llama2": {
        "full_finetune_single_device": ["7B_full_low_memory"],
        "lora_finetune_single_device": ["7B_lora_single_device", "7B_qlora_single_device"],
        "eleuther_eval": ["evaluation"],
    },
    "llama3": {
        "full_finetune_single_device": ["8B_full_single_device"],
        "full_finetune_distributed": ["8B_full", "70B_full"],
        "lora_finetune_single_device": [
            "8B_lora_single_device", "8B_qlora_single_device", "8B_dora_single_device", "8B_qdora_single_device",
        ],
        "lora_finetune_distributed": ["8B_lora", "8B_dora", "70B_lora"],
        "qat_distributed": ["8B_qat_full"],
        "qat_lora_finetune_distributed": ["8B_qat_lora"],
    },
    "llama3_1": {
        "full_finetune_single_device": ["8B_full_single_device"],
        "full_finetune_distributed": ["8B_full", "70B_full"],
        "lora_finetune_single_device": ["8B_lora_single_device", "8B_qlora_single_device"],
        "lora_finetune_distributed": ["8B_lora", "70B_lora", "405B_qlora"],
        "qat_lora_finetune_distributed": ["8B_qat_lora"],
        "lora_dpo_single_device": ["8B_lora_dpo_single_device"],
        "lora_dpo_distributed": ["8B_lora_dpo"],
        "full_dpo_distributed": ["8B_full_dpo"],
    },
    "llama3_2": {
        "grpo_finetune_single_device": ["1B_lora_grpo_single_device", "1B_qlora_grpo_single_device",
                                        "1B_full_grpo_single_device"],
        "grpo_finetune_distributed": ["1B_lora_grpo", "1B_full_grpo"],
        "full_finetune_single_device": ["1B_full_single_device", "3B_full_single_device"],
        "full_finetune_distributed": ["1B_full", "3B_full"],
        "lora_finetune_single_device": [
            "1B_lora_single_device", "3B_lora_single_device", "1B_qlora_single_device", "3B_qlora_single_device",
        ],
        "lora_finetune_distributed": ["1B_lora", "3B_lora"],
        "qat_lora_finetune_distributed": ["1B_qat_lora", "3B_qat_lora"],
        "knowledge_distillation_single_device": ["8B_to_1B_KD_lora_single_device"],
        "knowledge_distillation_distributed": ["8B_to_1B_KD_lora_distributed"],
        "eleuther_eval": ["evaluation"],
    },
    "llama3_3": {
        "full_finetune_distributed": ["70B_full", "70B_full_multinode"],
        "lora_finetune_distributed": ["70B_lora", "70B_qlora"],
    },
    "demo": {
        "grpo_finetune_single_device": ["tiny_grpo_lora"],
        "grpo_finetune_distributed": ["tiny_grpo_lora_distributed"],
        "ppo_full_finetune_single_device": ["tiny_ppo"],
        "lora_finetune_single_device": ["tiny_llama_lora", "smollm2_lora"],
        "lora_dpo_single_device": ["tiny_llama_lora_dpo_single_device"],
        "lora_dpo_distributed": ["tiny_llama_lora_dpo"],
        "full_dpo_distributed": ["tiny_llama_full_dpo"],
    },
    "phi3": {
        "full_finetune_single_device": ["mini_full_low_memory"],
        "full_finetune_distributed": ["mini_full"],
        "lora_finetune_single_device": ["mini_lora_single_device", "mini_qlora_single_device"],
        "lora_finetune_distributed": ["mini_lora"],
        "eleuther_eval": ["evaluation"],
    },
    "phi4": {
        "full_finetune_single_device": ["14B_full_low_memory"],
        "full_finetune_distributed": ["14B_full"],
        "lora_finetune_single_device": ["14B_lora_single_device", "14B_qlora_single_device"],
        "lora_finetune_distributed": ["14B_lora"],
        "eleuther_eval": ["evaluation"],
    },
    "qwen2": {
        "full_finetune_single_device": ["0.5B_full_single_device", "1.5B_full_single_device", "7B_full_single_device"],
        "full_finetune_distributed": ["0.5B_full", "1.5B_full", "7B_full"],
        "lora_finetune_single_device": ["0.5B_lora_single_device", "1.5B_lora_single_device", "7B_lora_single_device"],
        "lora_finetune_distributed": ["0.5B_lora", "1.5B_lora", "7B_lora"],
        "knowledge_distillation_single_device": ["1.5_to_0.5B_KD_lora_single_device"],
        "knowledge_distillation_distributed": ["1.5_to_0.5B_KD_lora_distributed"],
        "eleuther_eval": ["evaluation"],
    },
    # Ours: any Hugging Face decoder hf_decoder builds from its config.json (docs/hf_models.md).
    "hf_decoder": {
        "full_finetune_single_device": ["full_single_device"],
        "full_finetune_distributed": ["full"],
        "lora_finetune_single_device": ["lora_single_device", "qlora_single_device"],
        "lora_finetune_distributed": ["lora"],
    },
    "qwen3": {
        "grpo_finetune_single_device": ["0.6B_lora_grpo_single_device"],
        # torchtune's main branch (no 0.6.1 configs): one LoRA config, as the Qwen2.5 0.5B one.
        "lora_finetune_single_device": ["0.6B_lora_single_device"],
    },
    "qwen2_5": {
        "grpo_finetune_single_device": ["0.5B_lora_grpo_single_device", "1.5B_lora_grpo_single_device"],
        "full_finetune_single_device": ["0.5B_full_single_device", "1.5B_full_single_device", "3B_full_single_device",
                                        "7B_full_single_device"],
        "full_finetune_distributed": ["0.5B_full", "1.5B_full", "3B_full", "7B_full"],
        "lora_finetune_single_device": ["0.5B_lora_single_device", "1.5B_lora_single_device", "3B_lora_single_device",
                                        "7B_lora_single_device", "14B_lora_single_device"],
        "lora_finetune_distributed": ["0.5B_lora", "1.5B_lora", "3B_lora", "7B_lora", "32B_lora", "72B_lora"],
        "eleuther_eval": ["evaluation"],
    },
    "gemma": {
        "full_finetune_distributed": ["2B_full", "7B_full"],
        "lora_finetune_single_device": ["2B_lora_single_device", "2B_qlora_single_device", "7B_lora_single_device",
                                        "7B_qlora_single_device"],
        "lora_finetune_distributed": ["2B_lora", "7B_lora"],
        "eleuther_eval": ["evaluation"],
    },
    "gemma2": {
        "full_finetune_distributed": ["2B_full", "9B_full", "27B_full"],
        "lora_finetune_single_device": ["2B_lora_single_device", "2B_qlora_single_device", "9B_lora_single_device",
                                        "9B_qlora_single_device", "27B_lora_single_device", "27B_qlora_single_device"],
        "lora_finetune_distributed": ["2B_lora", "9B_lora", "27B_lora"],
    },
    "gemma3": {
        # Not in torchtune 0.6.1: Gemma 2 2B's hyper-parameters for the text-only 270M and 1B checkpoints
        # and for 4B, Gemma 2 9B's for 12B and Gemma 2 27B's for 27B (the text decoders of image-text checkpoints).
        "full_finetune_distributed": ["270M_full", "1B_full", "4B_full", "12B_full", "27B_full"],
        "lora_finetune_single_device": ["270M_lora_single_device", "270M_qlora_single_device", "1B_lora_single_device",
                                        "1B_qlora_single_device", "4B_lora_single_device", "4B_qlora_single_device",
                                        "12B_lora_single_device", "12B_qlora_single_device", "27B_lora_single_device",
                                        "27B_qlora_single_device"],
        "lora_finetune_distributed": ["270M_lora", "1B_lora", "4B_lora", "12B_lora", "27B_lora"],
        "eleuther_eval": ["evaluation"],
    },
    # Tiny CPU configs on the demo's assets (`make demo`), for the distillation and QAT recipes.
    "dev": {
        "knowledge_distillation_single_device": ["tiny_kd_lora_single_device"],
        "knowledge_distillation_distributed": ["tiny_kd_lora_distributed"],
        "qat_single_device": ["tiny_qat_single_device"],
        "qat_distributed": ["tiny_qat_distributed"],
        "qat_lora_finetune_distributed": ["tiny_qat_lora_distributed"],
    },
    "mistral": {
        "ppo_full_finetune_single_device": ["7B_full_ppo_low_memory"],
        "full_finetune_single_device": ["7B_full_low_memory"],
        "full_finetune_distributed": ["7B_full"],
        "lora_finetune_single_device": ["7B_lora_single_device", "7B_qlora_single_device"],
        "lora_finetune_distributed": ["7B_lora"],
        "eleuther_eval": ["evaluation"],
    },
}

# Configs that belong to no family: ``recipes/configs/<name>.yaml``.
_TOP_LEVEL_CONFIGS: Dict[str, List[str]] = {
    "generate": ["generation"],
    "quantize": ["quantization"],
    "eleuther_eval": ["eleuther_evaluation"],
}

# name, whether it may run on several processes (torchrun)
_RECIPES = [
    ("full_finetune_single_device", False),
    ("full_finetune_distributed", True),
    ("lora_finetune_single_device", False),
    ("lora_finetune_distributed", True),
    ("ppo_full_finetune_single_device", False),
    ("grpo_finetune_single_device", False),
    ("grpo_finetune_distributed", True),
    ("lora_dpo_single_device", False),
    ("lora_dpo_distributed", True),
    ("full_dpo_distributed", True),
    ("knowledge_distillation_single_device", False),
    ("knowledge_distillation_distributed", True),
    ("qat_single_device", False),
    ("qat_distributed", True),
    ("qat_lora_finetune_distributed", True),
    ("generate", False),
    ("quantize", False),
    ("eleuther_eval", False),
]


def _configs_of(recipe: str) -> List[Config]:
    configs = [Config(name=name, file_path=f"{name}.yaml") for name in _TOP_LEVEL_CONFIGS.get(recipe, [])]
    for family, by_recipe in _FAMILY_CONFIGS.items():
        configs += [Config(name=f"{family}/{n}", file_path=f"{family}/{n}.yaml") for n in by_recipe.get(recipe, [])]
    return configs


_REGISTRY: List[Recipe] = [
    Recipe(name=name, file_path=f"{name}.py", configs=_configs_of(name), supports_distributed=distributed)
    for name, distributed in _RECIPES
]


def get_all_recipes() -> List[Recipe]:
    """List the built-in recipes installed here, each with only its installed configs.

    Returns:
        List[Recipe]: recipes whose script exists, in registry order.
    """
    return [
        Recipe(
            name=r.name,
            file_path=r.file_path,
            configs=[c for c in r.configs if c.path.is_file()],
            supports_distributed=r.supports_distributed,
        )
        for r in _REGISTRY
        if r.path.is_file()
    ]


def get_all_configs() -> List[Config]:
    """List every installed built-in config, including those whose recipe is not installed.

    Returns:
        List[Config]: configs whose YAML file exists, in registry order.
    """
    return [c for r in _REGISTRY for c in r.configs if c.path.is_file()]


def get_recipe(name: str) -> Optional[Recipe]:
    """Find an installed built-in recipe by name.

    Args:
        name (str): recipe name such as ``"lora_finetune_single_device"``.

    Returns:
        Optional[Recipe]: the recipe, or None if no installed recipe has that name.
    """
    return next((r for r in get_all_recipes() if r.name == name), None)


def get_config(name: str) -> Optional[Config]:
    """Find an installed built-in config by name.

    Args:
        name (str): config name such as ``"llama2/7B_lora"``.

    Returns:
        Optional[Config]: the config, or None if no installed config has that name.
    """
    return next((c for c in get_all_configs() if c.name == name), None)
