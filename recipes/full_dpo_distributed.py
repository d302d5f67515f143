"""Full-parameter preference optimisation (DPO, RSO, SimPO, ORPO) on several devices (or CPU processes) with FSDP2.

    tune run --nproc_per_node 8 full_dpo_distributed --config llama3_1/8B_full_dpo

The full fine-tuning recipe (``full_finetune_distributed.py``) with a preference objective:
1. build the policy on the meta device and shard every transformer layer with FSDP2; rank 0 reads
   the checkpoint and each tensor is scattered as it is placed; the reference model is a second,
   frozen copy of the base (``ref_checkpointer``), sharded the same way and kept in eval mode;
2. each rank runs its own ``batch_size`` pairs of every global batch: the reference log-probs once,
   under ``no_grad``, then the policy's; the summed pair losses are normalised by the pairs of the
   whole window summed over ranks (``training.preference_loss_step``, ``training.TrainLoop``);
3. clip, step the optimizer and the LR schedule; rank 0 logs loss, lr, tokens per second per rank
   and the rewards of all ranks' pairs;
4. save: gather the full policy weights (and, for intermediate checkpoints, the full optimizer
   state) to rank 0, which writes them in the checkpointer's layout.
"""

import os
import sys
from functools import partial
from typing import Dict

import torch
from omegaconf import DictConfig

from torchtune import config, modules, training, utils

log = utils.get_logger("INFO")

# Top-level config keys this recipe reads (others get a warning).
CONFIG_KEYS = training.FINETUNE_CONFIG_KEYS | training.DISTRIBUTED_CONFIG_KEYS | {"ref_checkpointer"}


class FullDPORecipeDistributed:
    """Full-parameter preference optimisation of a decoder on several ranks, sharded with FSDP2.

    Call inside an initialised process group (``recipe_main`` does it).

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/llama3_1/8B_full_dpo.yaml``).
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._world_size, self._rank = training.get_world_size_and_rank()
        self._is_rank_zero = self._rank == 0
        self._resume_from_checkpoint = cfg.get("resume_from_checkpoint", False)
        self._fsdp_cpu_offload = cfg.get("fsdp_cpu_offload", False)
        self._keep_last_n_checkpoints = cfg.get("keep_last_n_checkpoints", None)
        self._state = training.RecipeState.from_config(cfg)

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build the sharded policy and reference, pair data and optimizer; restore them when resuming."""
        self._metric_logger = training.setup_metric_logger(cfg, enabled=self._is_rank_zero)
        object_device = None if self._device.type == "cpu" else self._device
        self._checkpointer, checkpoint = training.load_recipe_checkpoint(
            cfg.checkpointer, self._resume_from_checkpoint, distributed=True, is_rank_zero=self._is_rank_zero,
            device=object_device,
        )
        resume = self._state.resume_from(checkpoint, self._resume_from_checkpoint,
                                         keys=checkpoint[training.CHECKPOINT_KEYS_KEY])
        self._model = self._setup_model(cfg, checkpoint.pop(training.MODEL_KEY, {}))  # rank 0 drops its copy
        _, ref_checkpoint = training.load_recipe_checkpoint(
            cfg.ref_checkpointer, False, distributed=True, is_rank_zero=self._is_rank_zero, device=object_device,
        )
        self._ref_model = self._setup_model(cfg, ref_checkpoint.get(training.MODEL_KEY, {}))
        del ref_checkpoint

        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._loss_fn = config.instantiate(cfg.loss)
        self._optimizer = config.instantiate(cfg.optimizer, self._model.parameters())
        if resume is not None:
            training.load_from_full_optimizer_state(
                self._model, self._optimizer, checkpoint.get(training.OPT_KEY, {}), self._device
            )

        self._data = training.setup_preference_data(cfg, self._tokenizer, seed=self._state.seed,
                                                    num_replicas=self._world_size, rank=self._rank)
        self._loop = training.TrainLoop.from_config(
            cfg, self._state, self._data, self._metric_logger, self._device, optimizer=self._optimizer, ckpt=resume,
            world_size=self._world_size, is_rank_zero=self._is_rank_zero,
        )
        self._state.restore_rng_state(resume)

    def _setup_model(self, cfg: DictConfig, full_sd: Dict[str, torch.Tensor]) -> torch.nn.Module:
        with training.set_default_dtype(self._dtype), torch.device("meta"):
            model = config.instantiate(cfg.model)
        if cfg.get("enable_activation_checkpointing", False):
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        if cfg.get("compile", False):
            training.compile_model(model)
        training.shard_from_config(cfg, model, self._device, self._world_size)
        training.load_from_full_model_state_dict(
            model, full_sd, self._device, strict=True, cpu_offload=self._fsdp_cpu_offload
        )
        training.init_meta_buffers(model, self._device, self._dtype)
        training.log_model_info(model, self._device, self._dtype, world_size=self._world_size,  # logs on rank 0
                                log_memory=cfg.get("log_peak_memory_stats", False))
        return model

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Train every rank's policy shards on the preference loss until ``epochs`` are done."""
        metrics = training.PreferenceMetrics()  # all-reduced over ranks once per step
        loss_step = partial(training.preference_loss_step, reference=training.frozen_reference(self._ref_model),
                            metrics=metrics)
        self._loop.run(self._model, self._loss_fn, self._optimizer, save_checkpoint=self.save_checkpoint,
                       loss_step=loss_step, step_metrics=metrics.compute)

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Gather the policy to rank 0 and save it; with ``intermediate`` also the state to resume.

        Every rank must call it. ``samples_consumed`` counts the pairs of the epoch over all ranks.
        """
        model_sd, opt_sd = training.gather_for_checkpoint(
            self._model, self._optimizer, self._device, is_rank_zero=self._is_rank_zero, with_optimizer=intermediate,
            cpu_offload=self._fsdp_cpu_offload,
        )
        if self._is_rank_zero:
            self._loop.save(self._checkpointer, {training.MODEL_KEY: model_sd}, epoch,
                            samples_consumed=samples_consumed, intermediate=intermediate, optimizer_state=opt_sd,
                            keep_last_n_checkpoints=self._keep_last_n_checkpoints)

    def cleanup(self) -> None:
        if self._metric_logger is not None:
            self._metric_logger.close()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run --nproc_per_node N full_dpo_distributed --config <config> [key=value ...]``."""
    training.init_distributed_from_config(cfg)
    config.log_config(recipe_name="FullDPORecipeDistributed", cfg=cfg)
    config.warn_unused_keys(cfg, CONFIG_KEYS)
    recipe = FullDPORecipeDistributed(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    if os.environ.get("RANK", "0") != "0":
        log.setLevel("ERROR")  # one log for the job, rank 0's; failures are reported by record_rank_errors
    with training.record_rank_errors():
        recipe_main()
    sys.exit(0)
