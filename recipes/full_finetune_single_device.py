"""Full fine-tuning on a single device.

    tune run full_finetune_single_device --config llama2/7B_full_low_memory

The algorithm, top to bottom:
1. load the checkpoint into the model; every parameter trains;
2. for each optimizer step, run ``gradient_accumulation_steps`` micro-batches, summing the
   token-level cross-entropy, and divide the gradients by the number of trained tokens of the
   whole window; with ``optimizer_in_bwd`` the optimizer steps inside the backward pass instead
   (one micro-batch per step, loss normalised before backward) so gradients are never all alive;
3. clip, step the optimizer and the LR schedule, log loss / lr / tokens per second / memory;
4. save the weights in the checkpointer's layout every epoch and, on request, every
   ``save_every_n_steps`` steps with the state needed to resume mid-epoch.
"""

import sys
from typing import Any

from omegaconf import DictConfig

from torchtune import config, modules, training, utils

log = utils.get_logger("INFO")

# Top-level config keys this recipe reads (others get a warning).
CONFIG_KEYS = training.FINETUNE_CONFIG_KEYS | {"optimizer_in_bwd"}


class FullFinetuneRecipeSingleDevice:
    """Full-parameter fine-tuning of a decoder on one device (CPU, CUDA or MPS).

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/llama2/7B_full_low_memory.yaml``).

    Raises:
        ValueError: if ``optimizer_in_bwd`` is combined with gradient accumulation or clipping.
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._device = utils.get_device(cfg.device)
        self._compile = training.compile_enabled(cfg.get("compile", False), self._device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._optimizer_in_bwd = cfg.get("optimizer_in_bwd", False)
        self._resume_from_checkpoint = cfg.get("resume_from_checkpoint", False)
        if self._optimizer_in_bwd and cfg.get("gradient_accumulation_steps", 1) > 1:
            raise ValueError("optimizer_in_bwd steps inside backward: set gradient_accumulation_steps=1")
        if self._optimizer_in_bwd and cfg.get("clip_grad_norm", None) is not None:
            raise ValueError("optimizer_in_bwd cannot clip the global gradient norm: set clip_grad_norm=null")
        self._keep_last_n_checkpoints = cfg.get("keep_last_n_checkpoints", None)
        self._state = training.RecipeState.from_config(cfg)

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build the model, data and optimizer(s) from the config; restore them when resuming."""
        self._metric_logger = training.setup_metric_logger(cfg)
        self._checkpointer, checkpoint = training.load_recipe_checkpoint(cfg.checkpointer, self._resume_from_checkpoint)
        resume = self._state.resume_from(checkpoint, self._resume_from_checkpoint)

        with training.set_default_dtype(self._dtype), self._device:
            self._model = config.instantiate(cfg.model)
        if cfg.get("enable_activation_checkpointing", False):
            training.set_activation_checkpointing(self._model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        training.load_model_state_dict(self._model, checkpoint[training.MODEL_KEY])
        if self._compile:
            training.compile_model(self._model)
        training.log_model_info(self._model, self._device, self._dtype,
                                log_memory=cfg.get("log_peak_memory_stats", False))

        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._setup_optimizer(cfg.optimizer, checkpoint.get(training.OPT_KEY) if resume is not None else None)
        loss_fn = config.instantiate(cfg.loss)
        self._loss_fn = training.prepare_loss(loss_fn, self._model, compile=self._compile, fuse_output=True)

        self._data = training.setup_sft_data(cfg, self._tokenizer, ignore_index=self._loss_fn.ignore_index,
                                             seed=self._state.seed)
        self._loop = training.TrainLoop.from_config(cfg, self._state, self._data, self._metric_logger, self._device,
                                                    optimizer=self._optimizer, ckpt=resume)
        if self._optimizer_in_bwd and self._loop.lr_scheduler is not None:
            self._optim_ckpt_wrapper.set_lr_scheduler(self._loop.lr_scheduler)
        self._state.restore_rng_state(resume)

    def _setup_optimizer(self, cfg_optimizer: DictConfig, opt_state: Any) -> None:
        if self._optimizer_in_bwd:
            # One optimizer per parameter, stepped by a post-accumulate-grad hook during backward.
            optim_dict = {p: config.instantiate(cfg_optimizer, [p]) for p in self._model.parameters()}
            training.register_optim_in_bwd_hooks(model=self._model, optim_dict=optim_dict)
            self._optim_ckpt_wrapper = training.create_optim_in_bwd_wrapper(model=self._model, optim_dict=optim_dict)
            if opt_state is not None:
                self._optim_ckpt_wrapper.load_state_dict(opt_state)
            self._optimizer = next(iter(optim_dict.values()))
        else:
            self._optimizer = config.instantiate(cfg_optimizer, self._model.parameters())
            if opt_state is not None:
                self._optimizer.load_state_dict(opt_state)

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Train until ``epochs`` are done (``training.TrainLoop`` runs the steps)."""
        # With optimizer_in_bwd the hooks step the optimizers; the wrapper only reports the lr.
        optimizer = self._optim_ckpt_wrapper if self._optimizer_in_bwd else self._optimizer
        self._loop.run(self._model, self._loss_fn, optimizer, optimizer_in_backward=self._optimizer_in_bwd,
                       save_checkpoint=self.save_checkpoint)

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Save the weights; with ``intermediate`` also the state to resume from this point."""
        weights = {training.MODEL_KEY: {k: v.detach().cpu() for k, v in self._model.state_dict().items()}}
        opt = self._optim_ckpt_wrapper if self._optimizer_in_bwd else self._optimizer
        self._loop.save(self._checkpointer, weights, epoch, samples_consumed=samples_consumed,
                        intermediate=intermediate, optimizer_state=opt.state_dict() if intermediate else None,
                        keep_last_n_checkpoints=self._keep_last_n_checkpoints)

    def cleanup(self) -> None:
        self._metric_logger.close()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run full_finetune_single_device --config <config> [key=value ...]``."""
    config.log_config(recipe_name="FullFinetuneRecipeSingleDevice", cfg=cfg)
    config.warn_unused_keys(cfg, CONFIG_KEYS)
    recipe = FullFinetuneRecipeSingleDevice(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    sys.exit(recipe_main())
