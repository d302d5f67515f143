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
from torchtune.training._compile import compile_enabled, compile_loss, compile_model
from torchtune.training._distributed import (
    broadcast_object,
    get_distributed_backend,
    get_world_size_and_rank,
    init_distributed,
    is_distributed,
    record_rank_errors,
    set_torch_num_threads,
)
from torchtune.training._distributed_state import (
    gather_cpu_state_dict,
    get_full_optimizer_state_dict,
    get_initial_adapter_state_dict,
    load_from_full_model_state_dict,
    load_from_full_optimizer_state,
)
from torchtune.training._dropout import disable_dropout
from torchtune.training._fsdp import get_shard_conditions, shard_model, validate_no_params_on_meta_device
from torchtune.training._grad_accumulation import (
    check_loss_finite,
    count_trained_tokens,
    GradientAccumulator,
    NonFiniteLossError,
    scale_grads,
    shift_labels,
)
from torchtune.training._model_state import load_model_state_dict
from torchtune.training._profiler import (
    DEFAULT_PROFILE_DIR,
    DEFAULT_PROFILER_ACTIVITIES,
    DEFAULT_SCHEDULE,
    DEFAULT_TRACE_OPTS,
    DummyProfiler,
    PROFILER_KEY,
    setup_torch_profiler,
)
from torchtune.training._padding_free import remove_padding, supports_padding_free
from torchtune.training._recipe_components import (
    clip_gradients,
    fuse_chunked_output_loss,
    log_model_info,
    optimizer_step,
    prepare_loss,
    setup_lr_scheduler,
    setup_metric_logger,
    setup_profiler,
    sft_loss_step,
)
from torchtune.training._recipe_config import DISTRIBUTED_CONFIG_KEYS, FINETUNE_CONFIG_KEYS
from torchtune.training._recipe_data import build_sft_dataloader, get_steps_per_epoch, setup_sft_data, SFTData
from torchtune.training._recipe_fsdp import (
    gather_for_checkpoint,
    init_distributed_from_config,
    init_meta_buffers,
    shard_from_config,
)
from torchtune.training._recipe_lora import load_lora_weights, lora_checkpoint_state
from torchtune.training._recipe_preference import (
    frozen_reference,
    lora_reference,
    padded_collate_preference,
    preference_loss_step,
    PreferenceMetrics,
    setup_preference_data,
)
from torchtune.training._recipe_loop import (
    every_n_steps,
    should_save_mid_epoch,
    StepMetrics,
    TrainLoop,
    validation_loss,
)
from torchtune.training._recipe_state import (
    check_adapter_resumed,
    CHECKPOINT_KEYS_KEY,
    gather_rng_states,
    load_recipe_checkpoint,
    load_sampler_state,
    RANK_RNG_KEY,
    RecipeState,
    RESUME_REQUIRED_KEYS,
    SAMPLES_PER_STEP_KEY,
)
from torchtune.training._length_grouped_sampler import LengthGroupedSampler
from torchtune.training._sampler import StatefulDistributedSampler
from torchtune.training.checkpointing import (
    ADAPTER_CONFIG,
    ADAPTER_KEY,
    Checkpointer,
    DATALOADER_KEY,
    EPOCHS_KEY,
    FormattedCheckpointFiles,
    FullModelGGUFCheckpointer,
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
    gguf_model_config,
    save_gguf,
    update_state_dict_for_classifier,
    validate_state_dict,
)
# File helpers the quantize recipe uses (public here so that a copied recipe needs no private import).
from torchtune.training.checkpointing._files import expand_checkpoint_files
from torchtune.training.checkpointing._io import format_size, save_torch
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
    cpu_has_native_bf16,
    get_dtype,
    set_default_dtype,
    validate_expected_param_dtype,
    verify_bf16_support,
)
from torchtune.training.seed import set_seed

# torchtune's name for loading a full optimizer state dict into a sharded model's optimizer.
load_from_full_optimizer_state_dict = load_from_full_optimizer_state

__all__ = [
    "Checkpointer",
    "DEFAULT_PROFILER_ACTIVITIES",
    "DEFAULT_SCHEDULE",
    "DEFAULT_TRACE_OPTS",
    "FormattedCheckpointFiles",
    "PROFILER_KEY",
    "disable_dropout",
    "get_quantizer_mode",
    "load_from_full_optimizer_state_dict",
    "update_state_dict_for_classifier",
    "ADAPTER_CONFIG",
    "ADAPTER_KEY",
    "DATALOADER_KEY",
    "EPOCHS_KEY",
    "FullModelHFCheckpointer",
    "FullModelGGUFCheckpointer",
    "gguf_model_config",
    "save_gguf",
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
    "LengthGroupedSampler",
    "NoOpManager",
    "NonFiniteLossError",
    "OffloadActivations",
    "OptimizerInBackwardWrapper",
    "StatefulDistributedSampler",
    "apply_selective_activation_checkpointing",
    "broadcast_object",
    "check_loss_finite",
    "cleanup_before_training",
    "compile_enabled",
    "compile_loss",
    "compile_model",
    "count_trained_tokens",
    "create_optim_in_bwd_wrapper",
    "get_act_offloading_ctx_manager",
    "get_cosine_schedule_with_warmup",
    "gather_cpu_state_dict",
    "gather_for_checkpoint",
    "get_distributed_backend",
    "cpu_has_native_bf16",
    "get_dtype",
    "get_full_optimizer_state_dict",
    "get_initial_adapter_state_dict",
    "get_lr",
    "get_memory_stats",
    "get_shard_conditions",
    "get_world_size_and_rank",
    "init_distributed",
    "is_distributed",
    "load_from_full_model_state_dict",
    "load_from_full_optimizer_state",
    "load_model_state_dict",
    "log_memory_stats",
    "log_model_info",
    "record_rank_errors",
    "register_optim_in_bwd_hooks",
    "scale_grads",
    "save_torch",
    "set_activation_checkpointing",
    "set_default_dtype",
    "set_seed",
    "set_torch_num_threads",
    "shard_model",
    "setup_torch_profiler",
    "shift_labels",
    "validate_expected_param_dtype",
    "validate_no_params_on_meta_device",
    "validate_state_dict",
    "verify_bf16_support",
    "CHECKPOINT_KEYS_KEY",
    "DISTRIBUTED_CONFIG_KEYS",
    "FINETUNE_CONFIG_KEYS",
    "RANK_RNG_KEY",
    "RESUME_REQUIRED_KEYS",
    "SAMPLES_PER_STEP_KEY",
    "RecipeState",
    "SFTData",
    "StepMetrics",
    "TrainLoop",
    "build_sft_dataloader",
    "check_adapter_resumed",
    "clip_gradients",
    "every_n_steps",
    "expand_checkpoint_files",
    "format_size",
    "get_steps_per_epoch",
    "init_meta_buffers",
    "load_lora_weights",
    "gather_rng_states",
    "load_recipe_checkpoint",
    "load_sampler_state",
    "lora_checkpoint_state",
    "optimizer_step",
    "prepare_loss",
    "fuse_chunked_output_loss",
    "remove_padding",
    "supports_padding_free",
    "setup_lr_scheduler",
    "setup_metric_logger",
    "setup_profiler",
    "setup_sft_data",
    "shard_from_config",
    "sft_loss_step",
    "should_save_mid_epoch",
    "validation_loss",
    "init_distributed_from_config",
    # Preference (DPO-family) recipes
    "PreferenceMetrics",
    "frozen_reference",
    "lora_reference",
    "padded_collate_preference",
    "preference_loss_step",
    "setup_preference_data",
]


def __getattr__(name: str):
    # torchao is imported only when a quantization name is first used: it is slow to import.
    if name == "get_quantizer_mode":
        from torchtune.training.quantization import get_quantizer_mode

        return get_quantizer_mode
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
