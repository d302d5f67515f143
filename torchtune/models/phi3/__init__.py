from torchtune.models.phi3._component_builders import lora_phi3, phi3
from torchtune.models.phi3._convert_weights import phi3_hf_to_tune, phi3_tune_to_hf
from torchtune.models.phi3._model_builders import lora_phi3_mini, phi3_mini, qlora_phi3_mini
from torchtune.models.phi3._position_embeddings import Phi3RotaryPositionalEmbeddings

__all__ = [
    "lora_phi3",
    "lora_phi3_mini",
    "phi3",
    "phi3_hf_to_tune",
    "phi3_mini",
    "phi3_tune_to_hf",
    "Phi3RotaryPositionalEmbeddings",
    "qlora_phi3_mini",
]

from torchtune.models.phi3._tokenizer import Phi3MiniTokenizer, phi3_mini_tokenizer  # noqa: E402

__all__ += ["Phi3MiniTokenizer", "phi3_mini_tokenizer"]
