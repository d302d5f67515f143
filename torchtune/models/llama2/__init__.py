from torchtune.models.llama2._component_builders import llama2, llama2_mlp, scale_hidden_dim_for_mlp
from torchtune.models.llama2._model_builders import llama2_13b, llama2_70b, llama2_7b

__all__ = ["llama2", "llama2_mlp", "scale_hidden_dim_for_mlp", "llama2_7b", "llama2_13b", "llama2_70b"]
