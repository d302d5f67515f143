"""Knowledge distillation on a single device: a small student learns from a frozen teacher.

    tune run knowledge_distillation_single_device --config qwen2/1.5_to_0.5B_KD_lora_single_device

The algorithm, top to bottom:
1. load the student checkpoint into the student (LoRA adapters when ``model`` is a ``lora_*``
   builder, otherwise every parameter trains) and the teacher checkpoint, from its own
   ``teacher_checkpointer``, into the teacher, which is frozen and stays in eval mode;
2. for each micro-batch, both models see the same tokens; the objective per trained token is
   ``(1 - kd_ratio) * cross-entropy(student, label) + kd_ratio * KL(student, teacher)``
   (``kd_loss``: forward, reverse or symmetric KL), summed over the micro-batch
   (``training.distillation.kd_loss_step``); the gradients of a window are divided by its number of
   trained tokens, as in every fine-tuning recipe;
3. clip, step the optimizer and the LR schedule, log loss / lr / tokens per second / memory;
4. save the student (adapter + merged weights for LoRA, the weights otherwise) every epoch and, on
   request, every ``save_every_n_steps`` steps with the state needed to resume mid-epoch.
"""

import sys
from functools import partial
from typing import Any, Dict, Optional

import torch
from omegaconf import DictConfig

from torchtune import config, modules, training, utils
from torchtune.modules.peft import get_adapter_params, set_trainable_params
from torchtune.training import distillation

log = utils.get_logger("INFO")

# Top-level config keys this recipe reads (others get a warning).
CONFIG_KEYS = training.FINETUNE_CONFIG_KEYS | {
    "save_adapter_weights_only", "teacher_model", "teacher_checkpointer", "kd_loss", "kd_ratio",
}


class KDRecipeSingleDevice:
    """Distillation of a teacher decoder into a (LoRA or fully trained) student on one device.

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/qwen2/1.5_to_0.5B_KD_lora_single_device.yaml``).

    Raises:
        ValueError: if ``kd_ratio`` is outside ``[0, 1]``.
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._state = training.RecipeState.from_config(cfg)  # seeds the generators
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._kd_ratio = distillation.check_kd_ratio(cfg.get("kd_ratio", 0.5))
        self._is_lora = "lora_attn_modules" in cfg.model
        self._resume_from_checkpoint = cfg.get("resume_from_checkpoint", False)
        self._save_adapter_weights_only = cfg.get("save_adapter_weights_only", False)
        self._keep_last_n_checkpoints = cfg.get("keep_last_n_checkpoints", None)

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build student, teacher, data and optimizer from the config; restore them when resuming."""
        self._cfg_model = cfg.model
        self._metric_logger = training.setup_metric_logger(cfg)
        self._checkpointer, checkpoint = training.load_recipe_checkpoint(cfg.checkpointer, self._resume_from_checkpoint)
        resume = self._state.resume_from(checkpoint, self._resume_from_checkpoint)
        if resume is not None and self._is_lora:
            training.check_adapter_resumed(checkpoint, cfg.checkpointer.output_dir)

        adapter = checkpoint.get(training.ADAPTER_KEY) if resume is not None else None
        self._model = self._setup_student(cfg, checkpoint[training.MODEL_KEY], adapter)
        self._teacher = distillation.load_teacher(cfg, self._device, self._dtype)
        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._loss_fn = training.prepare_loss(config.instantiate(cfg.loss), self._model,
                                              compile=cfg.get("compile", False))
        self._kd_loss_fn = distillation.prepare_kd_loss(config.instantiate(cfg.kd_loss), self._loss_fn, self._model,
                                                        self._teacher)
        self._optimizer = config.instantiate(cfg.optimizer, [p for p in self._model.parameters() if p.requires_grad])
        if resume is not None:
            self._optimizer.load_state_dict(checkpoint[training.OPT_KEY])

        self._data = training.setup_sft_data(cfg, self._tokenizer, ignore_index=self._loss_fn.ignore_index,
                                             seed=self._state.seed)
        self._loop = training.TrainLoop.from_config(cfg, self._state, self._data, self._metric_logger, self._device,
                                                    optimizer=self._optimizer, ckpt=resume)
        self._state.restore_rng_state(resume)

    def _setup_student(
        self, cfg: DictConfig, base_state_dict: Dict[str, torch.Tensor], adapter_state_dict: Optional[Dict[str, Any]]
    ) -> torch.nn.Module:
        # As in the LoRA recipe: the base's random init does not consume the global generator.
        with torch.random.fork_rng(devices=[]):
            with training.set_default_dtype(self._dtype), self._device:
                model = config.instantiate(cfg.model)
        if cfg.get("enable_activation_checkpointing", False):
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        if self._is_lora:
            fresh = training.get_initial_adapter_state_dict(model) if adapter_state_dict is None else None
            training.load_lora_weights(model, partial(model.load_state_dict, strict=False), cfg.model,
                                       base_state_dict=base_state_dict, adapter_state_dict=adapter_state_dict,
                                       fresh_adapters=fresh)
            set_trainable_params(model, get_adapter_params(model))
        else:
            training.load_model_state_dict(model, base_state_dict)
        if cfg.get("compile", False):
            training.compile_model(model)
        training.log_model_info(model, self._device, self._dtype, log_memory=cfg.get("log_peak_memory_stats", False))
        return model

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Distil until ``epochs`` are done (``training.TrainLoop`` runs the steps)."""
        loss_step = partial(distillation.kd_loss_step, teacher_model=self._teacher, kd_loss_fn=self._kd_loss_fn,
                            kd_ratio=self._kd_ratio)
        self._loop.run(self._model, self._loss_fn, self._optimizer, save_checkpoint=self.save_checkpoint,
                       loss_step=loss_step)

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Save the student; with ``intermediate`` also the state to resume from this point."""
        model_sd = {k: v.detach().cpu() for k, v in self._model.state_dict().items()}
        adapter_only = self._is_lora and self._save_adapter_weights_only
        if self._is_lora:
            weights = training.lora_checkpoint_state(model_sd, self._cfg_model, adapter_only=adapter_only)
        else:
            weights = {training.MODEL_KEY: model_sd}
        self._loop.save(self._checkpointer, weights, epoch, samples_consumed=samples_consumed,
                        intermediate=intermediate, adapter_only=adapter_only,
                        optimizer_state=self._optimizer.state_dict() if intermediate else None,
                        keep_last_n_checkpoints=self._keep_last_n_checkpoints)

    def cleanup(self) -> None:
        self._metric_logger.close()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run knowledge_distillation_single_device --config <config> [key=value ...]``."""
    config.log_config(recipe_name="KDRecipeSingleDevice", cfg=cfg)
    config.warn_unused_keys(cfg, CONFIG_KEYS)
    recipe = KDRecipeSingleDevice(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    sys.exit(recipe_main())
