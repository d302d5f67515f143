from torchtune.models.phi4._model_builders import lora_phi4_14b, phi4_14b, qlora_phi4_14b

__all__ = ["lora_phi4_14b", "phi4_14b", "qlora_phi4_14b"]
from torchtune.models.phi4._tokenizer import Phi4Tokenizer, phi4_tokenizer

__all__ += ["phi4_tokenizer"]
