from torchtune.models.llama2._component_builders import (
    llama2,
    llama2_classifier,
    llama2_mlp,
    lora_llama2,
    lora_llama2_classifier,
    scale_hidden_dim_for_mlp,
)
from torchtune.models.llama2._model_builders import (
    llama2_13b,
    llama2_70b,
    llama2_7b,
    llama2_reward_7b,
    lora_llama2_13b,
    lora_llama2_70b,
    lora_llama2_7b,
    lora_llama2_reward_7b,
    qlora_llama2_13b,
    qlora_llama2_70b,
    qlora_llama2_7b,
    qlora_llama2_reward_7b,
)

__all__ = ["llama2", "llama2_mlp", "scale_hidden_dim_for_mlp", "llama2_7b", "llama2_13b", "llama2_70b",
           "lora_llama2", "lora_llama2_7b", "lora_llama2_13b", "lora_llama2_70b",
           "qlora_llama2_7b", "qlora_llama2_13b", "qlora_llama2_70b",
           "llama2_classifier", "lora_llama2_classifier", "llama2_reward_7b", "lora_llama2_reward_7b",
           "qlora_llama2_reward_7b"]

from torchtune.models.llama2._prompt_template import Llama2ChatTemplate  # noqa: E402
from torchtune.models.llama2._tokenizer import Llama2Tokenizer, llama2_tokenizer  # noqa: E402

__all__ += ["llama2_tokenizer", "Llama2Tokenizer", "Llama2ChatTemplate"]
