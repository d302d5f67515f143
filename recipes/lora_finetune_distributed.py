"""LoRA, QLoRA and DoRA fine-tuning on several devices (or CPU processes) with FSDP2.

    tune run --nproc_per_node 2 lora_finetune_distributed --config llama2/7B_lora

The single-device recipe (``lora_finetune_single_device.py``), data-parallel:
1. build the model with adapters on the meta device, freeze everything but the adapters and
   shard every transformer layer with FSDP2 (NF4 base weights too); rank 0 reads the checkpoint
   and each tensor is scattered as it is placed; fresh adapters are initialised on CPU, the same
   way for any number of ranks;
2. each rank trains on its own slice of every global batch (``DistributedSampler``); the summed
   token losses are normalised by the trained tokens of the whole window *summed over ranks*
   (``training.GradientAccumulator``), so the loss and the gradients equal the single-device
   recipe's for the same global batch (``batch_size * gradient_accumulation_steps * world_size``);
3. clip, step the optimizer and the LR schedule; rank 0 logs loss / lr / tokens per second per
   rank / memory;
4. save: gather the weights to rank 0, which writes the adapter (torchtune and PEFT formats) and
   the merged weights in HF layout, with the full optimizer state for intermediate checkpoints;
   the checkpoints are the single-device recipe's, so either recipe resumes from the other's.
"""

import os
import sys
from functools import partial
from typing import Dict, Optional

import torch
from omegaconf import DictConfig

from torchtune import config, modules, training, utils
from torchtune.modules.loss import SFTLoss
from torchtune.modules.peft import get_adapter_params, set_trainable_params

log = utils.get_logger("INFO")

# Top-level config keys this recipe reads (others get a warning).
CONFIG_KEYS = training.FINETUNE_CONFIG_KEYS | training.DISTRIBUTED_CONFIG_KEYS | {"save_adapter_weights_only"}


class LoRAFinetuneRecipeDistributed:
    """LoRA / QLoRA / DoRA fine-tuning of a decoder on several ranks, sharded with FSDP2.

    Call inside an initialised process group (``recipe_main`` does it).

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/llama2/7B_lora.yaml``).
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._state = training.RecipeState.from_config(cfg)  # seeds the generators
        self._world_size, self._rank = training.get_world_size_and_rank()
        self._is_rank_zero = self._rank == 0
        self._device = utils.get_device(cfg.device)
        self._compile = training.compile_enabled(cfg.get("compile", False), self._device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._resume_from_checkpoint = cfg.get("resume_from_checkpoint", False)
        self._save_adapter_weights_only = cfg.get("save_adapter_weights_only", False)
        self._fsdp_cpu_offload = cfg.get("fsdp_cpu_offload", False)
        self._keep_last_n_checkpoints = cfg.get("keep_last_n_checkpoints", None)

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build the sharded model with adapters, data and optimizer; restore them when resuming."""
        self._cfg_model = cfg.model  # LoRA rank, alpha and targets, for the adapter config
        self._metric_logger = training.setup_metric_logger(cfg, enabled=self._is_rank_zero)
        self._checkpointer, checkpoint = training.load_recipe_checkpoint(
            cfg.checkpointer, self._resume_from_checkpoint, distributed=True, is_rank_zero=self._is_rank_zero,
            device=None if self._device.type == "cpu" else self._device,
        )
        keys = checkpoint[training.CHECKPOINT_KEYS_KEY]
        resume = self._state.resume_from(checkpoint, self._resume_from_checkpoint, keys=keys)
        if resume is not None:
            training.check_adapter_resumed(keys, cfg.checkpointer.output_dir)
        loss_fn = config.instantiate(cfg.loss)  # before the model: it decides how `output` is sharded

        adapter = checkpoint.get(training.ADAPTER_KEY, {}) if resume is not None else None
        self._model = self._setup_model(cfg, checkpoint.get(training.MODEL_KEY, {}), adapter,
                                        shard_output=isinstance(loss_fn, SFTLoss))
        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._loss_fn = training.prepare_loss(loss_fn, self._model, compile=self._compile)
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

    def _setup_model(
        self,
        cfg: DictConfig,
        base_state_dict: Dict[str, torch.Tensor],
        adapter_state_dict: Optional[Dict[str, torch.Tensor]],
        *,
        shard_output: bool,
    ) -> torch.nn.Module:
        with training.set_default_dtype(self._dtype), torch.device("meta"):
            model = config.instantiate(cfg.model)
        # Every rank draws the same initial adapters, so the generators stay in step.
        fresh_adapters = training.get_initial_adapter_state_dict(model) if adapter_state_dict is None else None
        set_trainable_params(model, get_adapter_params(model))  # before sharding: FSDP keeps requires_grad
        if cfg.get("enable_activation_checkpointing", False):
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        if self._compile:
            training.compile_model(model)
        training.shard_from_config(cfg, model, self._device, self._world_size, shard_output=shard_output)

        # DoRA magnitudes of fresh adapters are computed on the shards.
        load = partial(training.load_from_full_model_state_dict, model, device=self._device,
                       cpu_offload=self._fsdp_cpu_offload)
        training.load_lora_weights(model, load, cfg.model, base_state_dict=base_state_dict,
                                   adapter_state_dict=adapter_state_dict, fresh_adapters=fresh_adapters)
        training.init_meta_buffers(model, self._device, self._dtype)
        training.log_model_info(model, self._device, self._dtype, world_size=self._world_size,  # logs on rank 0
                                log_memory=cfg.get("log_peak_memory_stats", False))
        return model

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Train the adapter shards of every rank until ``epochs`` are done (``training.TrainLoop``)."""
        self._loop.run(self._model, self._loss_fn, self._optimizer, save_checkpoint=self.save_checkpoint)

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Gather to rank 0 and save adapter + merged weights; with ``intermediate`` also the state to resume.

        Every rank must call it; ``samples_consumed`` counts the samples of the epoch over all ranks.
        """
        adapter_only = self._save_adapter_weights_only
        model_sd, opt_sd = training.gather_for_checkpoint(
            self._model, self._optimizer, self._device, is_rank_zero=self._is_rank_zero, with_optimizer=intermediate,
            cpu_offload=self._fsdp_cpu_offload, adapter_weights_only=adapter_only,
        )
        if not self._is_rank_zero:
            return
        weights = training.lora_checkpoint_state(model_sd, self._cfg_model, adapter_only=adapter_only)
        self._loop.save(self._checkpointer, weights, epoch, samples_consumed=samples_consumed,
                        intermediate=intermediate, optimizer_state=opt_sd, adapter_only=adapter_only,
                        keep_last_n_checkpoints=self._keep_last_n_checkpoints)

    def cleanup(self) -> None:
        if self._metric_logger is not None:
            self._metric_logger.close()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run --nproc_per_node N lora_finetune_distributed --config <config> [key=value ...]``."""
    # The process group comes first, so that any later failure is reported once for the job
    # (the device is selected after it: a rank without a GPU of its own then fails visibly).
    device_type = torch.device(cfg.device).type if cfg.get("device") else utils.get_device().type
    if device_type == "cuda" and not torch.cuda.is_available():
        utils.get_device(cfg.device)  # raises "CUDA is not available", rather than nccl failing to start
    backend = cfg.get("distributed_backend", None) or training.get_distributed_backend(
        device_type, offload_ops_to_cpu=cfg.get("fsdp_cpu_offload", False)
    )
    training.init_distributed(backend=backend, timeout=cfg.get("distributed_timeout_s", None))
    if device_type == "cpu" or cfg.get("fsdp_cpu_offload", False):
        training.set_torch_num_threads()  # ranks on one machine share its cores
    config.log_config(recipe_name="LoRAFinetuneRecipeDistributed", cfg=cfg)
    recipe = LoRAFinetuneRecipeDistributed(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    if os.environ.get("RANK", "0") != "0":
        log.setLevel("ERROR")  # one log for the job, rank 0's; failures are reported by record_rank_errors
    with training.record_rank_errors():
        recipe_main()
    sys.exit(0)
