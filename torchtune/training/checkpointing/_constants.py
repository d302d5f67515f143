"""Names shared by checkpointers and recipes: state-dict keys and on-disk file names."""

# Keys of the dict that ``load_checkpoint`` returns and ``save_checkpoint`` accepts.
MODEL_KEY = "model"
ADAPTER_KEY = "adapter"
ADAPTER_CONFIG = "adapter_config"
OPT_KEY = "optimizer"
SEED_KEY = "seed"
EPOCHS_KEY = "epochs_run"
TOTAL_EPOCHS_KEY = "total_epochs"
MAX_STEPS_KEY = "max_steps_per_epoch"
STEPS_KEY = "steps_run"
DATALOADER_KEY = "dataloader"
LR_SCHEDULER_KEY = "lr_scheduler"
RNG_KEY = "rng_state"

# Output layout under ``output_dir``.
RECIPE_STATE_DIRNAME = "recipe_state"
RECIPE_STATE_FNAME = "recipe_state.pt"
ADAPTER_DIRNAME = "adapter"
ADAPTER_MODEL_FNAME = "adapter_model"  # + ".pt" (torchtune keys) / ".safetensors" (PEFT keys)
EPOCH_DIR_PREFIX = "epoch_"
STEP_DIR_PREFIX = "step_"  # mid-epoch checkpoints (``save_every_n_steps``)

# Written into recipe state: which checkpoint folder it belongs to (not handed back to recipes).
SAVED_EPOCH_KEY = "_checkpoint_epoch"
SAVED_DIR_KEY = "_checkpoint_dir"

# Keys that are weights, never recipe state.
WEIGHT_KEYS = (MODEL_KEY, ADAPTER_KEY, ADAPTER_CONFIG)
