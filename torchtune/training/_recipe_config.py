"""The top-level config keys the fine-tuning recipes read (for ``config.warn_unused_keys``)."""

# Read by every fine-tuning recipe (directly or through the shared training pieces).
FINETUNE_CONFIG_KEYS = frozenset({
    "batch_size", "checkpointer", "clip_grad_norm", "compile", "dataset", "dataset_val", "device", "dtype",
    "enable_activation_checkpointing", "enable_activation_offloading", "epochs", "gradient_accumulation_steps",
    "group_by_length", "keep_last_n_checkpoints", "log_every_n_steps", "log_peak_memory_stats", "loss",
    "lr_scheduler", "max_steps_per_epoch", "metric_logger", "model", "optimizer", "output_dir", "padding_free",
    "profiler", "resume_from_checkpoint", "run_val_every_n_steps", "save_every_n_steps", "seed", "shuffle", "tokenizer",
})

# Read by the FSDP2 recipes besides FINETUNE_CONFIG_KEYS.
DISTRIBUTED_CONFIG_KEYS = frozenset({
    "custom_sharded_layers", "distributed_backend", "distributed_timeout_s", "fsdp_cpu_offload",
    "fsdp_param_dtype", "fsdp_reduce_dtype", "fsdp_reshard_after_forward",
})
