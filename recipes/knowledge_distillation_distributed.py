"""Knowledge distillation on several devices (or CPU processes) with FSDP2.

    tune run --nproc_per_node 2 knowledge_distillation_distributed --config qwen2/1.5_to_0.5B_KD_lora_distributed

The single-device recipe (``knowledge_distillation_single_device.py``), data-parallel:
1. build student and teacher on the meta device and shard every transformer layer of both with
   FSDP2; rank 0 reads the two checkpoints (the teacher's from ``teacher_checkpointer``) and each
   tensor is scattered as it is placed; the teacher is frozen, in eval mode; fresh LoRA adapters
   are initialised the same way for any number of ranks;
2. each rank distils on its own slice of every global batch; the summed objective
   ``(1 - kd_ratio) * CE + kd_ratio * KD`` is normalised by the trained tokens of the whole window
   summed over ranks, so loss and gradients equal the single-device recipe's for the same global batch;
3. clip, step the optimizer and the LR schedule; rank 0 logs;
4. save: gather the student to rank 0, which writes it as the single-device recipe does (either
   recipe resumes from the other's checkpoints).
"""

import os
import sys
from functools import partial
from typing import Dict, Optional

import torch
from omegaconf import DictConfig

from torchtune import config, modules, training, utils
from torchtune.modules.peft import get_adapter_params, set_trainable_params
from torchtune.training import distillation

log = utils.get_logger("INFO")

# Top-level config keys this recipe reads (others get a warning).
CONFIG_KEYS = training.FINETUNE_CONFIG_KEYS | training.DISTRIBUTED_CONFIG_KEYS | {
    "save_adapter_weights_only", "teacher_model", "teacher_checkpointer", "kd_loss", "kd_ratio",
}


class KDRecipeDistributed:
    """Distillation of a teacher into a (LoRA or fully trained) student on several ranks, with FSDP2.

    Call inside an initialised process group (``recipe_main`` does it).

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/qwen2/1.5_to_0.5B_KD_lora_distributed.yaml``).

    Raises:
        ValueError: if ``kd_ratio`` is outside ``[0, 1]``.
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._state = training.RecipeState.from_config(cfg)  # seeds the generators
        self._world_size, self._rank = training.get_world_size_and_rank()
        self._is_rank_zero = self._rank == 0
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._kd_ratio = distillation.check_kd_ratio(cfg.get("kd_ratio", 0.5))
        self._is_lora = "lora_attn_modules" in cfg.model
        self._resume_from_checkpoint = cfg.get("resume_from_checkpoint", False)
        self._save_adapter_weights_only = cfg.get("save_adapter_weights_only", False)
        self._fsdp_cpu_offload = cfg.get("fsdp_cpu_offload", False)
        self._keep_last_n_checkpoints = cfg.get("keep_last_n_checkpoints", None)

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build the sharded student and teacher, data and optimizer; restore them when resuming."""
        self._cfg_model = cfg.model
        self._metric_logger = training.setup_metric_logger(cfg, enabled=self._is_rank_zero)
        object_device = None if self._device.type == "cpu" else self._device
        self._checkpointer, checkpoint = training.load_recipe_checkpoint(
            cfg.checkpointer, self._resume_from_checkpoint, distributed=True, is_rank_zero=self._is_rank_zero,
            device=object_device,
        )
        keys = checkpoint[training.CHECKPOINT_KEYS_KEY]
        resume = self._state.resume_from(checkpoint, self._resume_from_checkpoint, keys=keys)
        if resume is not None and self._is_lora:
            training.check_adapter_resumed(keys, cfg.checkpointer.output_dir)

        adapter = checkpoint.get(training.ADAPTER_KEY, {}) if resume is not None else None
        self._model = self._setup_student(cfg, checkpoint.get(training.MODEL_KEY, {}), adapter)
        _, teacher_ckpt = training.load_recipe_checkpoint(cfg.teacher_checkpointer, False, distributed=True,
                                                          is_rank_zero=self._is_rank_zero, device=object_device)
        self._teacher = self._setup_teacher(cfg, teacher_ckpt.get(training.MODEL_KEY, {}))
        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._loss_fn = training.prepare_loss(config.instantiate(cfg.loss), self._model,
                                              compile=cfg.get("compile", False))
        self._kd_loss_fn = distillation.prepare_kd_loss(config.instantiate(cfg.kd_loss), self._loss_fn, self._model,
                                                        self._teacher)
        self._optimizer = config.instantiate(cfg.optimizer, [p for p in self._model.parameters() if p.requires_grad])
        if resume is not None:
            training.load_from_full_optimizer_state(
                self._model, self._optimizer, checkpoint.get(training.OPT_KEY, {}), self._device
            )

        self._data = training.setup_sft_data(cfg, self._tokenizer, ignore_index=self._loss_fn.ignore_index,
                                             seed=self._state.seed, num_replicas=self._world_size, rank=self._rank)
        self._loop = training.TrainLoop.from_config(
            cfg, self._state, self._data, self._metric_logger, self._device, optimizer=self._optimizer, ckpt=resume,
            world_size=self._world_size, is_rank_zero=self._is_rank_zero,
        )
        self._state.restore_rng_state(resume)

    def _setup_student(self, cfg: DictConfig, base_state_dict: Dict[str, torch.Tensor],
                       adapter_state_dict: Optional[Dict[str, torch.Tensor]]) -> torch.nn.Module:
        with training.set_default_dtype(self._dtype), torch.device("meta"):
            model = config.instantiate(cfg.model)
        fresh = None
        if self._is_lora:
            # Every rank draws the same initial adapters, as the single-device recipe does.
            fresh = training.get_initial_adapter_state_dict(model) if adapter_state_dict is None else None
            set_trainable_params(model, get_adapter_params(model))  # before sharding: FSDP keeps requires_grad
        if cfg.get("enable_activation_checkpointing", False):
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        if cfg.get("compile", False):
            training.compile_model(model)
        training.shard_from_config(cfg, model, self._device, self._world_size)
        load = partial(training.load_from_full_model_state_dict, model, device=self._device,
                       cpu_offload=self._fsdp_cpu_offload)
        if self._is_lora:
            training.load_lora_weights(model, load, cfg.model, base_state_dict=base_state_dict,
                                       adapter_state_dict=adapter_state_dict, fresh_adapters=fresh)
        else:
            load(base_state_dict, strict=True)
        training.init_meta_buffers(model, self._device, self._dtype)
        training.log_model_info(model, self._device, self._dtype, world_size=self._world_size,
                                log_memory=cfg.get("log_peak_memory_stats", False))
        return model

    def _setup_teacher(self, cfg: DictConfig, state_dict: Dict[str, torch.Tensor]) -> torch.nn.Module:
        with training.set_default_dtype(self._dtype), torch.device("meta"):
            teacher = config.instantiate(cfg.teacher_model)
        distillation.freeze_teacher(teacher)
        training.shard_from_config(cfg, teacher, self._device, self._world_size)
        training.load_from_full_model_state_dict(teacher, state_dict, self._device, strict=True,
                                                 cpu_offload=self._fsdp_cpu_offload)
        training.init_meta_buffers(teacher, self._device, self._dtype)
        return teacher

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Distil on every rank until ``epochs`` are done (``training.TrainLoop`` runs the steps)."""
        loss_step = partial(distillation.kd_loss_step, teacher_model=self._teacher, kd_loss_fn=self._kd_loss_fn,
                            kd_ratio=self._kd_ratio)
        self._loop.run(self._model, self._loss_fn, self._optimizer, save_checkpoint=self.save_checkpoint,
                       loss_step=loss_step)

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Gather the student to rank 0 and save it; with ``intermediate`` also the state to resume.

        Every rank must call it.
        """
        adapter_only = self._is_lora and self._save_adapter_weights_only
        model_sd, opt_sd = training.gather_for_checkpoint(
            self._model, self._optimizer, self._device, is_rank_zero=self._is_rank_zero, with_optimizer=intermediate,
            cpu_offload=self._fsdp_cpu_offload, adapter_weights_only=adapter_only,
        )
        if not self._is_rank_zero:
            return
        if self._is_lora:
            weights = training.lora_checkpoint_state(model_sd, self._cfg_model, adapter_only=adapter_only)
        else:
            weights = {training.MODEL_KEY: model_sd}
        self._loop.save(self._checkpointer, weights, epoch, samples_consumed=samples_consumed,
                        intermediate=intermediate, optimizer_state=opt_sd, adapter_only=adapter_only,
                        keep_last_n_checkpoints=self._keep_last_n_checkpoints)

    def cleanup(self) -> None:
        if self._metric_logger is not None:
            self._metric_logger.close()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run --nproc_per_node N knowledge_distillation_distributed --config <config> ...``."""
    training.init_distributed_from_config(cfg)
    config.log_config(recipe_name="KDRecipeDistributed", cfg=cfg)
    config.warn_unused_keys(cfg, CONFIG_KEYS)
    recipe = KDRecipeDistributed(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    if os.environ.get("RANK", "0") != "0":
        log.setLevel("ERROR")  # one log for the job, rank 0's; failures are reported by record_rank_errors
    with training.record_rank_errors():
        recipe_main()
    sys.exit(0)
