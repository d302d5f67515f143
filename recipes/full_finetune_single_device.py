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
from typing import Any, Dict, Optional, Tuple

import torch
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
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._optimizer_in_bwd = cfg.get("optimizer_in_bwd", False)
        self._resume_from_checkpoint = cfg.get("resume_from_checkpoint", False)
        self._clip_grad_norm = cfg.get("clip_grad_norm", None)
        if self._optimizer_in_bwd and cfg.get("gradient_accumulation_steps", 1) > 1:
            raise ValueError("optimizer_in_bwd steps inside backward: set gradient_accumulation_steps=1")
        if self._optimizer_in_bwd and self._clip_grad_norm is not None:
            raise ValueError("optimizer_in_bwd cannot clip the global gradient norm: set clip_grad_norm=null")
        self._keep_last_n_checkpoints = cfg.get("keep_last_n_checkpoints", None)
        self._state = training.RecipeState(
            seed=training.set_seed(seed=cfg.get("seed", None)),
            total_epochs=cfg.epochs,
            max_steps_per_epoch=cfg.get("max_steps_per_epoch", None),
        )

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build every component from the config, restoring state when resuming."""
        self._metric_logger = config.instantiate(cfg.metric_logger)
        self._metric_logger.log_config(cfg)

        self._checkpointer = config.instantiate(cfg.checkpointer, resume_from_checkpoint=self._resume_from_checkpoint)
        checkpoint = self._checkpointer.load_checkpoint()
        resume = checkpoint if self._resume_from_checkpoint else None
        if resume is not None:
            self._state.restore(checkpoint)

        with training.set_default_dtype(self._dtype), self._device:
            self._model = config.instantiate(cfg.model)
        if cfg.get("enable_activation_checkpointing", False):
            training.set_activation_checkpointing(self._model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        training.load_model_state_dict(self._model, checkpoint[training.MODEL_KEY])
        self._activations_handling_ctx = training.get_act_offloading_ctx_manager(
            self._model, cfg.get("enable_activation_offloading", False)
        )
        if cfg.get("compile", False):
            training.compile_model(self._model)
        log.info(f"Model on {self._device} in {self._dtype}: "
                 f"{sum(p.numel() for p in self._model.parameters()):,} parameters")
        if cfg.get("log_peak_memory_stats", False):
            training.log_memory_stats(training.get_memory_stats(device=self._device), "after model init")

        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._setup_optimizer(cfg.optimizer, checkpoint.get(training.OPT_KEY) if resume is not None else None)
        self._loss_fn = training.prepare_loss(config.instantiate(cfg.loss), self._model, compile=cfg.get("compile", False))

        self._data = training.setup_sft_data(cfg, self._tokenizer, ignore_index=self._loss_fn.ignore_index,
                                             seed=self._state.seed)
        self._loop = training.TrainLoop.from_config(cfg, self._state, self._data, self._metric_logger, self._device)
        self._lr_scheduler = training.setup_lr_scheduler(
            cfg.get("lr_scheduler"), self._optimizer, num_training_steps=self._loop.total_steps,
            last_epoch=self._state.global_step - 1, ckpt=resume,
        )
        if self._optimizer_in_bwd and self._lr_scheduler is not None:
            self._optim_ckpt_wrapper.set_lr_scheduler(self._lr_scheduler)
        if resume is not None:
            training.load_sampler_state(self._data.sampler, checkpoint)
            torch.set_rng_state(checkpoint[training.RNG_KEY])

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
    def _loss_step(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        return training.sft_loss_step(self._model, self._loss_fn, batch, self._activations_handling_ctx)

    def _backward(self, loss: torch.Tensor, num_tokens: torch.Tensor) -> None:
        if self._optimizer_in_bwd:
            # The optimizer steps inside backward, so normalise before it.
            (loss / num_tokens.clamp(min=1)).backward()
        else:
            loss.backward()

    def _optimizer_step(self) -> Optional[torch.Tensor]:
        if self._optimizer_in_bwd:
            return None  # already stepped in backward
        grad_norm = training.clip_gradients(self._model.parameters(), self._clip_grad_norm)
        self._optimizer.step()
        self._optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def validate(self) -> float:
        """Mean token cross-entropy over the validation set."""
        return training.validation_loss(self._model, self._data.val_dataloader, self._loss_step, self._device)

    def train(self) -> None:
        """Run the training loop (``training.TrainLoop``) until ``epochs`` are done."""
        training.cleanup_before_training()
        self._model.train()
        # With optimizer_in_bwd there are no gradients left to normalise when a window ends.
        grad_params = (lambda: []) if self._optimizer_in_bwd else self._model.parameters
        self._loop.run(
            self._loss_step, self._optimizer_step, grad_params=grad_params, backward=self._backward,
            lr_source=self._optim_ckpt_wrapper if self._optimizer_in_bwd else self._optimizer,
            lr_scheduler=self._lr_scheduler, save_checkpoint=self.save_checkpoint,
            validate=self.validate if self._data.val_dataloader is not None else None,
        )

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Save the weights; with ``intermediate`` also the state to resume from this point."""
        state: Dict[str, Any] = {training.MODEL_KEY: {k: v.detach().cpu() for k, v in self._model.state_dict().items()}}
        if intermediate:
            opt = self._optim_ckpt_wrapper if self._optimizer_in_bwd else self._optimizer
            state.update(self._state.state_dict(
                optimizer=opt.state_dict(),
                dataloader=self._data.sampler.state_dict(samples_consumed),
                samples_per_step=self._loop.samples_per_step,
                lr_scheduler=None if self._lr_scheduler is None else self._lr_scheduler.state_dict(),
            ))
        self._checkpointer.save_checkpoint(
            state, epoch=epoch, intermediate_checkpoint=intermediate,
            step=self._state.global_step if samples_consumed > 0 else None,
            keep_last_n_checkpoints=self._keep_last_n_checkpoints,
        )

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
