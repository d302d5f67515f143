"""Checkpointers: read Hugging Face / Meta / torchtune checkpoints, write them back, resume runs.

Imports nothing from ``torchtune.training`` itself, which re-exports these names.
"""

from typing import Union

from torchtune.training.checkpointing._checkpointer import (
    FullModelMetaCheckpointer,
    FullModelTorchTuneCheckpointer,
)
from torchtune.training.checkpointing._classifier import update_state_dict_for_classifier
from torchtune.training.checkpointing._constants import (
    ADAPTER_CONFIG,
    ADAPTER_KEY,
    DATALOADER_KEY,
    EPOCHS_KEY,
    LR_SCHEDULER_KEY,
    MAX_STEPS_KEY,
    MODEL_KEY,
    OPT_KEY,
    RNG_KEY,
    SEED_KEY,
    STEPS_KEY,
    TOTAL_EPOCHS_KEY,
)
from torchtune.training.checkpointing._files import FormattedCheckpointFiles, get_largest_iter_folder
from torchtune.training.checkpointing._gguf import gguf_model_config, save_gguf
from torchtune.training.checkpointing._gguf_checkpointer import FullModelGGUFCheckpointer
from torchtune.training.checkpointing._hf_checkpointer import FullModelHFCheckpointer
from torchtune.training.checkpointing._model_type import ModelType
from torchtune.training.checkpointing._validate import validate_state_dict

# Any of the checkpointers, for annotations (``checkpointer: Checkpointer``).
Checkpointer = Union[
    FullModelHFCheckpointer, FullModelMetaCheckpointer, FullModelTorchTuneCheckpointer, FullModelGGUFCheckpointer
]

__all__ = [
    "Checkpointer",
    "FormattedCheckpointFiles",
    "get_largest_iter_folder",
    "update_state_dict_for_classifier",
    "FullModelHFCheckpointer",
    "FullModelGGUFCheckpointer",
    "gguf_model_config",
    "save_gguf",
    "FullModelMetaCheckpointer",
    "FullModelTorchTuneCheckpointer",
    "ModelType",
    "validate_state_dict",
    "MODEL_KEY",
    "ADAPTER_KEY",
    "ADAPTER_CONFIG",
    "OPT_KEY",
    "SEED_KEY",
    "EPOCHS_KEY",
    "TOTAL_EPOCHS_KEY",
    "MAX_STEPS_KEY",
    "STEPS_KEY",
    "DATALOADER_KEY",
    "LR_SCHEDULER_KEY",
    "RNG_KEY",
]
