"""Activation memory: checkpointing (recompute in backward) and offloading (park on the CPU)."""
from torchtune.training._activation_checkpointing import (
    apply_selective_activation_checkpointing,
    set_activation_checkpointing,
)
from torchtune.training._activation_offloading import (
    get_act_offloading_ctx_manager,
    NoOpManager,
    OffloadActivations,
)

__all__ = [
    "NoOpManager",
    "OffloadActivations",
    "apply_selective_activation_checkpointing",
    "get_act_offloading_ctx_manager",
    "set_activation_checkpointing",
]
