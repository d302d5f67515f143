"""LoRA, QLoRA and DoRA fine-tuning on a single device.

    tune run lora_finetune_single_device --config llama2/7B_lora_single_device

The algorithm, top to bottom:
1. load the base checkpoint, build the model with adapters, freeze everything but the adapters;
2. for each optimizer step, run ``gradient_accumulation_steps`` micro-batches, summing the
   token-level cross-entropy, and divide the gradients by the number of trained tokens of the
   whole window (so 2 micro-batches of 2 equal one batch of 4);
3. clip, step the optimizer and the LR schedule, log loss / lr / tokens per second / memory;
4. save the adapter (torchtune and PEFT formats) and the merged weights in HF layout, every
   epoch and, on request, every ``save_every_n_steps`` steps with the state needed to resume
   mid-epoch.
"""

import sys
from functools import partial
from typing import Any, Dict, Optional

import torch
from omegaconf import DictConfig

from torchtune import config, modules, training, utils
from torchtune.modules.peft import get_adapter_params, set_trainable_params

log = utils.get_logger("INFO")

# Top-level config keys this recipe reads (others get a warning).
CONFIG_KEYS = training.FINETUNE_CONFIG_KEYS | {"save_adapter_weights_only"}


class LoRAFinetuneRecipeSingleDevice:
    """LoRA / QLoRA / DoRA fine-tuning of a decoder on one device (CPU, CUDA or MPS).

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/llama2/7B_lora_single_device.yaml``).
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._state = training.RecipeState.from_config(cfg)  # seeds the generators
        self._device = utils.get_device(cfg.device)
        self._compile = training.compile_enabled(cfg.get("compile", False), self._device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._resume_from_checkpoint = cfg.get("resume_from_checkpoint", False)
        self._save_adapter_weights_only = cfg.get("save_adapter_weights_only", False)
        self._keep_last_n_checkpoints = cfg.get("keep_last_n_checkpoints", None)

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build the model with adapters, data and optimizer from the config; restore them when resuming."""
        self._cfg_model = cfg.model  # LoRA rank, alpha and targets, for the adapter config
        self._metric_logger = training.setup_metric_logger(cfg)
        self._checkpointer, checkpoint = training.load_recipe_checkpoint(cfg.checkpointer, self._resume_from_checkpoint)
        resume = self._state.resume_from(checkpoint, self._resume_from_checkpoint)
        if resume is not None:
            training.check_adapter_resumed(checkpoint, cfg.checkpointer.output_dir)

        adapter = checkpoint.get(training.ADAPTER_KEY) if resume is not None else None
        self._model = self._setup_model(cfg, checkpoint[training.MODEL_KEY], adapter)
        self._tokenizer = config.instantiate(cfg.tokenizer)
        loss_fn = config.instantiate(cfg.loss)
        self._loss_fn = training.prepare_loss(loss_fn, self._model, compile=self._compile, fuse_output=True)
        self._optimizer = config.instantiate(cfg.optimizer, [p for p in self._model.parameters() if p.requires_grad])
        if resume is not None:
            self._optimizer.load_state_dict(checkpoint[training.OPT_KEY])

        self._data = training.setup_sft_data(cfg, self._tokenizer, ignore_index=self._loss_fn.ignore_index,
                                             seed=self._state.seed)
        self._loop = training.TrainLoop.from_config(cfg, self._state, self._data, self._metric_logger, self._device,
                                                    optimizer=self._optimizer, ckpt=resume)
        self._state.restore_rng_state(resume)

    def _setup_model(
        self, cfg: DictConfig, base_state_dict: Dict[str, torch.Tensor], adapter_state_dict: Optional[Dict[str, Any]]
    ) -> torch.nn.Module:
        # The random init of the base weights (overwritten below) must not consume the global
        # generator: fresh adapters then get exactly the numbers the distributed recipe draws.
        with torch.random.fork_rng(devices=[]):
            with training.set_default_dtype(self._dtype), self._device:
                model = config.instantiate(cfg.model)
        fresh_adapters = training.get_initial_adapter_state_dict(model) if adapter_state_dict is None else None
        if cfg.get("enable_activation_checkpointing", False):
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        training.load_lora_weights(
            model, partial(model.load_state_dict, strict=False), cfg.model,
            base_state_dict=base_state_dict, adapter_state_dict=adapter_state_dict, fresh_adapters=fresh_adapters,
        )
        set_trainable_params(model, get_adapter_params(model))
        if self._compile:
            training.compile_model(model)
        training.log_model_info(model, self._device, self._dtype, log_memory=cfg.get("log_peak_memory_stats", False))
        return model

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Train the adapters until ``epochs`` are done (``training.TrainLoop`` runs the steps)."""
        self._loop.run(self._model, self._loss_fn, self._optimizer, save_checkpoint=self.save_checkpoint)

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Save adapter + merged weights; with ``intermediate`` also the state to resume from here."""
        model_sd = {k: v.detach().cpu() for k, v in self._model.state_dict().items()}
        adapter_only = self._save_adapter_weights_only
        self._loop.save(
            self._checkpointer, training.lora_checkpoint_state(model_sd, self._cfg_model, adapter_only=adapter_only),
            epoch, samples_consumed=samples_consumed, intermediate=intermediate, adapter_only=adapter_only,
            optimizer_state=self._optimizer.state_dict() if intermediate else None,
            keep_last_n_checkpoints=self._keep_last_n_checkpoints,
        )

    def cleanup(self) -> None:
        self._metric_logger.close()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run lora_finetune_single_device --config <config> [key=value ...]``."""
    config.log_config(recipe_name="LoRAFinetuneRecipeSingleDevice", cfg=cfg)
    config.warn_unused_keys(cfg, CONFIG_KEYS)
    recipe = LoRAFinetuneRecipeSingleDevice(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    sys.exit(recipe_main())
