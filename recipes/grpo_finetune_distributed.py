"""GRPO on several devices (or CPU processes) with FSDP2: LoRA, QLoRA or full training.

    tune run --nproc_per_node 2 grpo_finetune_distributed --config llama3_2/1B_lora_grpo

The single-device recipe (``grpo_finetune_single_device.py``), data-parallel:
1. build the policy on the meta device and shard every transformer layer (NF4 base weights too);
   rank 0 reads the checkpoint; with LoRA the reference is the policy with adapters disabled, with
   full training a frozen copy sharded the same way (``ref_checkpointer``);
2. each rank takes its own ``batch_size`` prompts per step and samples ``group_size`` answers to each
   (so groups never span ranks), scores them and normalises the rewards within each group;
   generation always runs ``max_generated_tokens`` steps, because every sharded forward is a
   collective that all ranks must join;
3. the updates normalise the summed token losses by the answer tokens of the mini-batch summed over
   ranks (``training.GradientAccumulator``);
4. rank 0 logs the rewards averaged over ranks and writes the single-device recipe's checkpoints.
"""

import os
import sys
import time
from functools import partial
from typing import Any, Dict

import torch
import torch.distributed as dist
from omegaconf import DictConfig

from torchtune import config, modules, rlhf, training, utils
from torchtune.modules.peft import disable_adapter, get_adapter_params, set_trainable_params
from torchtune.rlhf._recipe import build_prompt_dataloader, save_rl_checkpoint

log = utils.get_logger("INFO")

CONFIG_KEYS = {
    "output_dir", "tokenizer", "dataset", "model", "checkpointer", "ref_checkpointer", "resume_from_checkpoint",
    "save_adapter_weights_only", "seed", "shuffle", "batch_size", "epochs", "max_steps_per_epoch", "group_size",
    "max_generated_tokens", "temperature", "top_k", "stop_token_ids", "enable_kv_cache", "forward_batch_size",
    "reward_functions", "advantage_scale", "loss", "ppo_epochs", "ppo_batch_size", "gradient_accumulation_steps",
    "optimizer", "lr_scheduler", "clip_grad_norm", "device", "dtype", "enable_activation_checkpointing",
    "metric_logger", "log_every_n_steps", "log_peak_memory_stats", "save_every_n_steps", "keep_last_n_checkpoints",
} | training.DISTRIBUTED_CONFIG_KEYS


class GRPOFinetuneRecipeDistributed:
    """GRPO of a decoder sharded with FSDP2 over several ranks. Call inside a process group.

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/llama3_2/1B_lora_grpo.yaml``).
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._state = training.RecipeState.from_config(cfg)
        self._world_size, self._rank = training.get_world_size_and_rank()
        self._is_rank_zero = self._rank == 0
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._resume = cfg.get("resume_from_checkpoint", False)
        self._batch_size = cfg.batch_size
        self._rollout_kwargs = dict(
            group_size=cfg.group_size, max_generated_tokens=cfg.max_generated_tokens,
            temperature=cfg.get("temperature", 1.0), top_k=cfg.get("top_k", None),
            forward_batch_size=cfg.get("forward_batch_size", None), enable_kv_cache=cfg.get("enable_kv_cache", True),
            advantage_scale=cfg.get("advantage_scale", True), early_stop=False,
        )
        self._update_kwargs = dict(
            ppo_epochs=cfg.get("ppo_epochs", 1), ppo_batch_size=cfg.get("ppo_batch_size", None),
            gradient_accumulation_steps=cfg.get("gradient_accumulation_steps", 1),
            temperature=cfg.get("temperature", 1.0),
        )
        self._clip_grad_norm = cfg.get("clip_grad_norm", None)
        self._save_every_n_steps = cfg.get("save_every_n_steps", None)
        self._save_adapter_weights_only = cfg.get("save_adapter_weights_only", False)
        self._keep_last_n_checkpoints = cfg.get("keep_last_n_checkpoints", None)
        self._cpu_offload = cfg.get("fsdp_cpu_offload", False)
        self.reward_history = []  # mean reward over all ranks per step

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build the sharded policy (and reference), data, rewards, loss and optimizer; restore when resuming."""
        self._cfg_model = cfg.model
        self._metric_logger = training.setup_metric_logger(cfg, enabled=self._is_rank_zero)
        device = None if self._device.type == "cpu" else self._device
        self._checkpointer, checkpoint = training.load_recipe_checkpoint(
            cfg.checkpointer, self._resume, distributed=True, is_rank_zero=self._is_rank_zero, device=device)
        keys = checkpoint[training.CHECKPOINT_KEYS_KEY]
        resume = self._state.resume_from(checkpoint, self._resume, keys=keys)
        self._model, self._lora = self._setup_policy(cfg, checkpoint, resume, keys)
        self._reference = None if self._lora else self._setup_reference(cfg)
        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._stop_tokens = list(cfg.get("stop_token_ids") or getattr(self._tokenizer, "stop_tokens", None)
                                 or [self._tokenizer.eos_id])
        self._reward_functions = [config.instantiate(c) for c in cfg.reward_functions]
        self._loss_fn = config.instantiate(cfg.loss)
        self._optimizer = config.instantiate(cfg.optimizer, [p for p in self._model.parameters() if p.requires_grad])
        if resume is not None:
            training.load_from_full_optimizer_state(self._model, self._optimizer, checkpoint.get(training.OPT_KEY, {}),
                                                    self._device)

        self._sampler, self._dataloader = build_prompt_dataloader(
            cfg.dataset, self._tokenizer, batch_size=cfg.batch_size, shuffle=cfg.shuffle, seed=self._state.seed,
            num_replicas=self._world_size, rank=self._rank)
        self._steps_per_epoch = training.get_steps_per_epoch(len(self._dataloader), 1, self._state.max_steps_per_epoch,
                                                             self._world_size)
        n = cfg.batch_size * cfg.group_size
        self._optimizer_steps_per_step = self._update_kwargs["ppo_epochs"] * n // (cfg.get("ppo_batch_size") or n)
        self._lr_scheduler = training.setup_lr_scheduler(
            cfg.get("lr_scheduler"), self._optimizer,
            num_training_steps=self._state.total_epochs * self._steps_per_epoch * self._optimizer_steps_per_step,
            last_epoch=self._state.global_step * self._optimizer_steps_per_step - 1, ckpt=resume)
        if resume is not None:
            training.load_sampler_state(self._sampler, resume, self._world_size)
        self._metrics = training.StepMetrics(self._metric_logger, self._device,
                                             log_every_n_steps=cfg.get("log_every_n_steps", 1),
                                             log_peak_memory_stats=cfg.get("log_peak_memory_stats", False),
                                             world_size=self._world_size, is_rank_zero=self._is_rank_zero)
        self._state.restore_rng_state(resume)
        self._rng = torch.Generator(device=self._device)  # re-seeded per step and rank: see train()

    def _shard(self, cfg: DictConfig, model: torch.nn.Module) -> None:
        if cfg.get("enable_activation_checkpointing", False):
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        training.shard_from_config(cfg, model, self._device, self._world_size)

    def _setup_policy(self, cfg: DictConfig, checkpoint: Dict[str, Any], resume: Any, keys: Any):
        with training.set_default_dtype(self._dtype), torch.device("meta"):
            model = config.instantiate(cfg.model)
        lora = bool(get_adapter_params(model))
        load = partial(training.load_from_full_model_state_dict, model, device=self._device,
                       cpu_offload=self._cpu_offload)
        if lora:
            if resume is not None:
                training.check_adapter_resumed(keys, cfg.checkpointer.output_dir)
            adapter = checkpoint.get(training.ADAPTER_KEY, {}) if resume is not None else None
            fresh = training.get_initial_adapter_state_dict(model) if adapter is None else None
            set_trainable_params(model, get_adapter_params(model))  # before sharding: FSDP keeps requires_grad
            self._shard(cfg, model)
            training.load_lora_weights(model, load, cfg.model, base_state_dict=checkpoint.get(training.MODEL_KEY, {}),
                                       adapter_state_dict=adapter, fresh_adapters=fresh)
        else:
            self._shard(cfg, model)
            load(checkpoint.get(training.MODEL_KEY, {}), strict=True)
        training.init_meta_buffers(model, self._device, self._dtype)
        training.log_model_info(model, self._device, self._dtype, world_size=self._world_size,
                                log_memory=cfg.get("log_peak_memory_stats", False))
        return model, lora

    def _setup_reference(self, cfg: DictConfig) -> torch.nn.Module:
        if cfg.get("ref_checkpointer") is None:
            raise ValueError("full GRPO training needs ref_checkpointer: the checkpoint of the reference "
                             "(base) policy, usually the same files as checkpointer")
        ref_sd = {}
        if self._is_rank_zero:
            ref_sd = config.instantiate(cfg.ref_checkpointer, resume_from_checkpoint=False).load_checkpoint()
            ref_sd = ref_sd[training.MODEL_KEY]
        with training.set_default_dtype(self._dtype), torch.device("meta"):
            reference = config.instantiate(cfg.model)
        reference.requires_grad_(False)
        training.shard_from_config(cfg, reference, self._device, self._world_size)
        training.load_from_full_model_state_dict(reference, ref_sd, device=self._device, strict=True,
                                                 cpu_offload=self._cpu_offload)
        training.init_meta_buffers(reference, self._device, self._dtype)
        return reference.eval()

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Rollouts and updates on every rank until ``epochs`` are done."""
        state = self._state
        reference_context = (lambda: disable_adapter(self._model)) if self._lora else torch.no_grad
        step_fn = partial(training.optimizer_step, self._optimizer, self._model, self._clip_grad_norm)
        on_step = None if self._lr_scheduler is None else self._lr_scheduler.step
        for epoch in range(state.epochs_run, state.total_epochs):
            self._sampler.set_epoch(epoch)
            self._metrics.start_epoch(epoch, self._steps_per_epoch, state.steps_into_epoch)
            for batch in self._dataloader:
                if state.steps_into_epoch >= self._steps_per_epoch:
                    break
                t0 = time.perf_counter()
                # Each rank samples its own answers; seeding by (seed, step, rank) makes a resumed run
                # sample exactly what the uninterrupted one did.
                self._rng.manual_seed((state.seed * 1_000_003 + state.global_step) * 1024 + self._rank)
                out = rlhf.generate_rollouts(
                    self._model, batch["tokens"], batch["answer"], pad_id=self._tokenizer.pad_id,
                    stop_tokens=self._stop_tokens, decode=self._tokenizer.decode,
                    reward_functions=self._reward_functions, reference_context=reference_context,
                    reference=self._reference, rng=self._rng, **self._rollout_kwargs,
                )
                t1 = time.perf_counter()
                stats = rlhf.grpo_update(self._model, self._loss_fn, self._optimizer, out["rollout"],
                                         optimizer_step=step_fn, on_step=on_step, **self._update_kwargs)
                t2 = time.perf_counter()
                training.check_loss_finite(stats["loss"], state.global_step + 1)
                state.global_step += 1
                state.steps_into_epoch += 1
                self._log(out, stats, t1 - t0, t2 - t1)
                if training.should_save_mid_epoch(state, self._steps_per_epoch, self._save_every_n_steps):
                    self.save_checkpoint(epoch, samples_consumed=state.steps_into_epoch * self._batch_size
                                         * self._world_size, intermediate=True)
            self._metrics.end_epoch()
            state.epochs_run += 1
            state.steps_into_epoch = 0
            self.save_checkpoint(epoch, samples_consumed=0, intermediate=state.epochs_run < state.total_epochs)

    def _log(self, out: Dict[str, Any], stats: Dict[str, float], t_rollout: float, t_update: float) -> None:
        rollout = out["rollout"]
        # [reward sum, answers, generated tokens, kl * tokens, trained tokens] summed over ranks
        totals = torch.tensor([float(rollout.rewards.sum()), rollout.rewards.numel(), out["num_generated_tokens"],
                               stats["kl"] * stats["num_tokens"], stats["num_tokens"]], dtype=torch.float64,
                              device=self._device if self._device.type != "cpu" else "cpu")
        dist.all_reduce(totals)
        reward = float(totals[0] / totals[1])
        self.reward_history.append(reward)
        step = self._state.global_step
        self._metrics.step(step, stats["loss"], float(totals[4]), self._optimizer)
        if self._is_rank_zero and step % self._metrics.log_every_n_steps == 0:
            self._metric_logger.log_dict({
                "reward": reward, "kl": float(totals[3] / totals[4].clamp(min=1)),
                "policy_loss": stats["policy_loss"], "clipfrac": stats["clipfrac"],
                "rollout_tokens_per_second_per_gpu": float(totals[2]) / self._world_size / max(t_rollout, 1e-9),
                "update_tokens_per_second_per_gpu": rollout.query_responses.numel() * self._update_kwargs["ppo_epochs"]
                / max(t_update, 1e-9),
            }, step=step)

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Gather to rank 0 and save (every rank calls it); ``samples_consumed`` counts prompts over all ranks."""
        adapter_only = self._lora and self._save_adapter_weights_only
        model_sd, opt_sd = training.gather_for_checkpoint(
            self._model, self._optimizer, self._device, is_rank_zero=self._is_rank_zero, with_optimizer=intermediate,
            cpu_offload=self._cpu_offload, adapter_weights_only=adapter_only)
        if not self._is_rank_zero:
            return
        weights = (training.lora_checkpoint_state(model_sd, self._cfg_model, adapter_only=adapter_only)
                   if self._lora else {training.MODEL_KEY: model_sd})
        save_rl_checkpoint(
            self._checkpointer, weights, self._state, self._sampler, epoch, samples_consumed=samples_consumed,
            samples_per_step=self._batch_size * self._world_size, intermediate=intermediate, optimizer_state=opt_sd,
            lr_scheduler=self._lr_scheduler, adapter_only=adapter_only,
            keep_last_n_checkpoints=self._keep_last_n_checkpoints,
        )

    def cleanup(self) -> None:
        if self._metric_logger is not None:
            self._metric_logger.close()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run --nproc_per_node N grpo_finetune_distributed --config <config> [key=value ...]``."""
    training.init_distributed_from_config(cfg)
    config.log_config(recipe_name="GRPOFinetuneRecipeDistributed", cfg=cfg)
    if training.get_world_size_and_rank()[1] == 0:
        config.warn_unused_keys(cfg, CONFIG_KEYS)
    recipe = GRPOFinetuneRecipeDistributed(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    if os.environ.get("RANK", "0") != "0":
        log.setLevel("ERROR")  # one log for the job, rank 0's
    with training.record_rank_errors():
        recipe_main()
    sys.exit(0)
