from torchtune.models.mistral._component_builders import (
    lora_mistral,
    lora_mistral_classifier,
    mistral,
    mistral_classifier,
)
from torchtune.models.mistral._model_builders import (
    lora_mistral_7b,
    lora_mistral_reward_7b,
    mistral_7b,
    mistral_reward_7b,
    qlora_mistral_7b,
    qlora_mistral_reward_7b,
)

__all__ = [
    "lora_mistral",
    "lora_mistral_7b",
    "lora_mistral_classifier",
    "lora_mistral_reward_7b",
    "mistral",
    "mistral_7b",
    "mistral_classifier",
    "mistral_reward_7b",
    "qlora_mistral_7b",
    "qlora_mistral_reward_7b",
]

from torchtune.models.mistral._prompt_template import MistralChatTemplate  # noqa: E402
from torchtune.models.mistral._tokenizer import MistralTokenizer, mistral_tokenizer  # noqa: E402

__all__ += ["mistral_tokenizer", "MistralTokenizer", "MistralChatTemplate"]
