"""Training utilities: precision, LR schedules, metric logging, memory, activations and training maths."""
from torchtune.training._activation_checkpointing import (
    apply_selective_activation_checkpointing,
    set_activation_checkpointing,
)
from torchtune.training._activation_offloading import (
    get_act_offloading_ctx_manager,
    NoOpManager,
    OffloadActivations,
)
from torchtune.training._compile import compile_loss, compile_model
from torchtune.training._distributed import get_world_size_and_rank, is_distributed
from torchtune.training._grad_accumulation import (
    check_loss_finite,
    count_trained_tokens,
    GradientAccumulator,
    NonFiniteLossError,
    scale_grads,
    shift_labels,
)
from torchtune.training._model_state import load_model_state_dict
from torchtune.training._profiler import DEFAULT_PROFILE_DIR, DummyProfiler, setup_torch_profiler
from torchtune.training._sampler import StatefulDistributedSampler
from torchtune.training.checkpointing import (
    ADAPTER_CONFIG,
    ADAPTER_KEY,
    DATALOADER_KEY,
    EPOCHS_KEY,
    FullModelHFCheckpointer,
    FullModelMetaCheckpointer,
    FullModelTorchTuneCheckpointer,
    LR_SCHEDULER_KEY,
    MAX_STEPS_KEY,
    MODEL_KEY,
    ModelType,
    OPT_KEY,
    RNG_KEY,
    SEED_KEY,
    STEPS_KEY,
    TOTAL_EPOCHS_KEY,
    validate_state_dict,
)
from torchtune.training.lr_schedulers import get_cosine_schedule_with_warmup, get_lr
from torchtune.training.memory import (
    cleanup_before_training,
    create_optim_in_bwd_wrapper,
    get_memory_stats,
    log_memory_stats,
    OptimizerInBackwardWrapper,
    register_optim_in_bwd_hooks,
)
from torchtune.training.precision import (
    get_dtype,
    set_default_dtype,
    validate_expected_param_dtype,
    verify_bf16_support,
)
from torchtune.training.seed import set_seed

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_KEY",
    "DATALOADER_KEY",
    "EPOCHS_KEY",
    "FullModelHFCheckpointer",
    "FullModelMetaCheckpointer",
    "FullModelTorchTuneCheckpointer",
    "LR_SCHEDULER_KEY",
    "MAX_STEPS_KEY",
    "MODEL_KEY",
    "ModelType",
    "OPT_KEY",
    "RNG_KEY",
    "SEED_KEY",
    "STEPS_KEY",
    "TOTAL_EPOCHS_KEY",
    "DEFAULT_PROFILE_DIR",
    "DummyProfiler",
    "GradientAccumulator",
    "NoOpManager",
    "NonFiniteLossError",
    "OffloadActivations",
    "OptimizerInBackwardWrapper",
    "StatefulDistributedSampler",
    "apply_selective_activation_checkpointing",
    "check_loss_finite",
    "cleanup_before_training",
    "compile_loss",
    "compile_model",
    "count_trained_tokens",
    "create_optim_in_bwd_wrapper",
    "get_act_offloading_ctx_manager",
    "get_cosine_schedule_with_warmup",
    "get_dtype",
    "get_lr",
    "get_memory_stats",
    "get_world_size_and_rank",
    "is_distributed",
    "load_model_state_dict",
    "log_memory_stats",
    "register_optim_in_bwd_hooks",
    "scale_grads",
    "set_activation_checkpointing",
    "set_default_dtype",
    "set_seed",
    "setup_torch_profiler",
    "shift_labels",
    "validate_expected_param_dtype",
    "validate_state_dict",
    "verify_bf16_support",
]
