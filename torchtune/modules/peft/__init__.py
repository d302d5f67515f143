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


def __getattr__(name: str):
    # QATLoRALinear needs torchao.quantization.qat, whose import (about 2 s: it pulls in torch._dynamo)
    # every LoRA run would pay; it is loaded on first use, like torchtune.training's quantizers.
    if name == "QATLoRALinear":
        from torchtune.modules.peft.qat_lora import QATLoRALinear

        return QATLoRALinear
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
