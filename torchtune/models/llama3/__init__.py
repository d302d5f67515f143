from torchtune.models.llama3._component_builders import llama3, lora_llama3
from torchtune.models.llama3._model_builders import (
    llama3_70b,
    llama3_8b,
    lora_llama3_70b,
    lora_llama3_8b,
    qlora_llama3_70b,
    qlora_llama3_8b,
)
from torchtune.models.llama3._parallelism import base_llama_tp_plan

__all__ = ["llama3", "lora_llama3", "llama3_8b", "llama3_70b", "lora_llama3_8b", "lora_llama3_70b",
           "qlora_llama3_8b", "qlora_llama3_70b", "base_llama_tp_plan"]

from torchtune.models.llama3._tokenizer import Llama3Tokenizer, llama3_tokenizer  # noqa: E402

__all__ += ["llama3_tokenizer", "Llama3Tokenizer"]
