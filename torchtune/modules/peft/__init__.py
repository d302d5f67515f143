from torchtune.modules.peft._builders import get_lora_linear_builder, lora_linear_builder
from torchtune.modules.peft._merge import get_merged_lora_ckpt
from torchtune.modules.peft._utils import (
    LORA_ATTN_MODULES,
    AdapterModule,
    disable_adapter,
    get_adapter_params,
    get_adapter_state_dict,
    get_lora_module_names,
    load_dora_magnitudes,
    set_trainable_params,
    validate_missing_and_unexpected_for_lora,
)
from torchtune.modules.peft.dora import DoRALinear
from torchtune.modules.peft.lora import LoRALinear
from torchtune.modules.peft.qat_lora import QATLoRALinear

__all__ = [
    "AdapterModule",
    "DoRALinear",
    "LORA_ATTN_MODULES",
    "LoRALinear",
    "QATLoRALinear",
    "disable_adapter",
    "get_adapter_params",
    "get_adapter_state_dict",
    "get_lora_linear_builder",
    "get_lora_module_names",
    "get_merged_lora_ckpt",
    "load_dora_magnitudes",
    "lora_linear_builder",
    "set_trainable_params",
    "validate_missing_and_unexpected_for_lora",
]
