"""GRPO (group relative policy optimisation) on one device: LoRA, QLoRA or full training.

    tune run grpo_finetune_single_device --config llama3_2/1B_lora_grpo_single_device

The algorithm, top to bottom:
1. load the policy; with LoRA/QLoRA (a ``lora_*`` / ``qlora_*`` model) only the adapters train and
   the reference policy is the same model with its adapters disabled; with a plain model every
   weight trains and the reference is a frozen copy loaded by ``ref_checkpointer``;
2. per step, take ``batch_size`` prompts and sample ``group_size`` answers to each with
   ``torchtune.generation.generate`` (KV cache), score them with the configured verifiable
   ``reward_functions``, and normalise each reward within its group: the advantage (no value model);
3. take ``ppo_epochs`` passes over the rollouts in ``ppo_batch_size`` mini-batches (one optimizer
   step each, ``gradient_accumulation_steps`` micro-batches) on the clipped objective with a KL
   penalty to the reference (``torchtune.rlhf.loss.GRPOLoss``, token-normalised);
4. log reward, KL, clip fraction and rollout / update tokens per second; save adapters (torchtune and
   PEFT formats) and merged weights, or the full weights, every epoch and every
   ``save_every_n_steps`` steps with the state to resume from exactly.
"""

import sys
import time
from contextlib import nullcontext
from functools import partial
from typing import Any, Dict

import torch
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
}


class GRPOFinetuneRecipeSingleDevice:
    """GRPO of a decoder on one device with verifiable rewards.

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/llama3_2/1B_lora_grpo_single_device.yaml``).
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._state = training.RecipeState.from_config(cfg)  # seeds the generators
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._resume = cfg.get("resume_from_checkpoint", False)
        self._group_size = cfg.group_size
        self._batch_size = cfg.batch_size
        self._rollout_kwargs = dict(
            group_size=cfg.group_size, max_generated_tokens=cfg.max_generated_tokens,
            temperature=cfg.get("temperature", 1.0), top_k=cfg.get("top_k", None),
            forward_batch_size=cfg.get("forward_batch_size", None), enable_kv_cache=cfg.get("enable_kv_cache", True),
            advantage_scale=cfg.get("advantage_scale", True),
        )
        self._update_kwargs = dict(
            ppo_epochs=cfg.get("ppo_epochs", 1), ppo_batch_size=cfg.get("ppo_batch_size", None),
            gradient_accumulation_steps=cfg.get("gradient_accumulation_steps", 1),
            temperature=cfg.get("temperature", 1.0),
        )
        self._clip_grad_norm = cfg.get("clip_grad_norm", None)
        self._save_every_n_steps = cfg.get("save_every_n_steps", None)
        self._save_kwargs = {"keep_last_n_checkpoints": cfg.get("keep_last_n_checkpoints", None)}
        self._save_adapter_weights_only = cfg.get("save_adapter_weights_only", False)
        self.reward_history = []  # mean reward per step, for callers and tests

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build policy, reference, data, rewards, loss and optimizer; restore them when resuming."""
        self._cfg_model = cfg.model
        self._metric_logger = training.setup_metric_logger(cfg)
        self._checkpointer, checkpoint = training.load_recipe_checkpoint(cfg.checkpointer, self._resume)
        resume = self._state.resume_from(checkpoint, self._resume)
        self._model, self._lora = self._setup_policy(cfg, checkpoint, resume)
        self._reference = None if self._lora else self._setup_reference(cfg)
        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._stop_tokens = list(cfg.get("stop_token_ids") or getattr(self._tokenizer, "stop_tokens", None)
                                 or [self._tokenizer.eos_id])
        self._reward_functions = [config.instantiate(c) for c in cfg.reward_functions]
        self._loss_fn = config.instantiate(cfg.loss)
        self._optimizer = config.instantiate(cfg.optimizer, [p for p in self._model.parameters() if p.requires_grad])
        if resume is not None:
            self._optimizer.load_state_dict(checkpoint[training.OPT_KEY])

        self._sampler, self._dataloader = build_prompt_dataloader(
            cfg.dataset, self._tokenizer, batch_size=cfg.batch_size, shuffle=cfg.shuffle, seed=self._state.seed)
        self._steps_per_epoch = training.get_steps_per_epoch(len(self._dataloader), 1, self._state.max_steps_per_epoch)
        n = cfg.batch_size * cfg.group_size
        self._optimizer_steps_per_step = self._update_kwargs["ppo_epochs"] * n // (cfg.get("ppo_batch_size") or n)
        self._lr_scheduler = training.setup_lr_scheduler(
            cfg.get("lr_scheduler"), self._optimizer,
            num_training_steps=self._state.total_epochs * self._steps_per_epoch * self._optimizer_steps_per_step,
            last_epoch=self._state.global_step * self._optimizer_steps_per_step - 1, ckpt=resume)
        if resume is not None:
            training.load_sampler_state(self._sampler, resume)
        self._metrics = training.StepMetrics(self._metric_logger, self._device,
                                             log_every_n_steps=cfg.get("log_every_n_steps", 1),
                                             log_peak_memory_stats=cfg.get("log_peak_memory_stats", False))
        self._state.restore_rng_state(resume)

    def _setup_policy(self, cfg: DictConfig, checkpoint: Dict[str, Any], resume: Any):
        # Base weights' random init is overwritten; it must not consume the global generator.
        with torch.random.fork_rng(devices=[]):
            with training.set_default_dtype(self._dtype), self._device:
                model = config.instantiate(cfg.model)
        lora = bool(get_adapter_params(model))
        if lora:
            if resume is not None:
                training.check_adapter_resumed(checkpoint, cfg.checkpointer.output_dir)
            adapter = checkpoint.get(training.ADAPTER_KEY) if resume is not None else None
            training.load_lora_weights(
                model, partial(model.load_state_dict, strict=False), cfg.model,
                base_state_dict=checkpoint[training.MODEL_KEY], adapter_state_dict=adapter,
                fresh_adapters=training.get_initial_adapter_state_dict(model) if adapter is None else None,
            )
            set_trainable_params(model, get_adapter_params(model))
        else:
            model.load_state_dict(checkpoint[training.MODEL_KEY])
        if cfg.get("enable_activation_checkpointing", False):
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        training.log_model_info(model, self._device, self._dtype, log_memory=cfg.get("log_peak_memory_stats", False))
        return model, lora

    def _setup_reference(self, cfg: DictConfig) -> torch.nn.Module:
        """The frozen reference of full training: the base weights, loaded by ``ref_checkpointer``."""
        if cfg.get("ref_checkpointer") is None:
            raise ValueError("full GRPO training needs ref_checkpointer: the checkpoint of the reference "
                             "(base) policy, usually the same files as checkpointer")
        ref_sd = config.instantiate(cfg.ref_checkpointer, resume_from_checkpoint=False).load_checkpoint()
        with torch.random.fork_rng(devices=[]):
            with training.set_default_dtype(self._dtype), self._device:
                reference = config.instantiate(cfg.model)
        reference.load_state_dict(ref_sd[training.MODEL_KEY])
        reference.requires_grad_(False)
        return reference.eval()

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Rollouts and updates until ``epochs`` are done."""
        state = self._state
        reference_context = (lambda: disable_adapter(self._model)) if self._lora else nullcontext
        step_fn = partial(training.optimizer_step, self._optimizer, self._model, self._clip_grad_norm)
        on_step = None if self._lr_scheduler is None else self._lr_scheduler.step
        for epoch in range(state.epochs_run, state.total_epochs):
            self._sampler.set_epoch(epoch)
            self._metrics.start_epoch(epoch, self._steps_per_epoch, state.steps_into_epoch)
            for batch in self._dataloader:
                if state.steps_into_epoch >= self._steps_per_epoch:
                    break
                t0 = time.perf_counter()
                out = rlhf.generate_rollouts(
                    self._model, batch["tokens"], batch["answer"], pad_id=self._tokenizer.pad_id,
                    stop_tokens=self._stop_tokens, decode=self._tokenizer.decode,
                    reward_functions=self._reward_functions, reference_context=reference_context,
                    reference=self._reference, **self._rollout_kwargs,
                )
                t1 = time.perf_counter()
                rollout = out["rollout"]
                stats = rlhf.grpo_update(self._model, self._loss_fn, self._optimizer, rollout,
                                         optimizer_step=step_fn, on_step=on_step, **self._update_kwargs)
                t2 = time.perf_counter()
                training.check_loss_finite(stats["loss"], state.global_step + 1)
                state.global_step += 1
                state.steps_into_epoch += 1
                self._log(rollout, out, stats, t1 - t0, t2 - t1)
                if training.should_save_mid_epoch(state, self._steps_per_epoch, self._save_every_n_steps):
                    self.save_checkpoint(epoch, samples_consumed=state.steps_into_epoch * self._batch_size,
                                         intermediate=True)
            self._metrics.end_epoch()
            state.epochs_run += 1
            state.steps_into_epoch = 0
            self.save_checkpoint(epoch, samples_consumed=0, intermediate=state.epochs_run < state.total_epochs)

    def _log(self, rollout: rlhf.Rollout, out: Dict[str, Any], stats: Dict[str, float], t_rollout: float,
             t_update: float) -> None:
        reward = float(rollout.rewards.mean())
        self.reward_history.append(reward)
        sequence_tokens = int(rollout.query_responses.numel())
        self._metrics.step(self._state.global_step, stats["loss"], stats["num_tokens"], self._optimizer)
        if self._state.global_step % self._metrics.log_every_n_steps == 0:
            components = out["reward_components"].mean(dim=0).tolist()
            self._metric_logger.log_dict({
                "reward": reward, "reward_std": float(rollout.rewards.std()),
                **{f"reward_{i}": c for i, c in enumerate(components)},
                "kl": stats["kl"], "policy_loss": stats["policy_loss"], "clipfrac": stats["clipfrac"],
                "ratios": stats["ratios"],
                "response_length": out["num_generated_tokens"] / rollout.response_mask.shape[0],
                "rollout_tokens_per_second": out["num_generated_tokens"] / max(t_rollout, 1e-9),
                "update_tokens_per_second": sequence_tokens * self._update_kwargs["ppo_epochs"] / max(t_update, 1e-9),
            }, step=self._state.global_step)

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Save adapter + merged weights (LoRA) or the full weights; with ``intermediate`` the state to resume."""
        model_sd = {k: v.detach().cpu() for k, v in self._model.state_dict().items()}
        adapter_only = self._lora and self._save_adapter_weights_only
        weights = (training.lora_checkpoint_state(model_sd, self._cfg_model, adapter_only=adapter_only)
                   if self._lora else {training.MODEL_KEY: model_sd})
        save_rl_checkpoint(
            self._checkpointer, weights, self._state, self._sampler, epoch, samples_consumed=samples_consumed,
            samples_per_step=self._batch_size, intermediate=intermediate,
            optimizer_state=self._optimizer.state_dict() if intermediate else None, lr_scheduler=self._lr_scheduler,
            adapter_only=adapter_only, **self._save_kwargs,
        )

    def cleanup(self) -> None:
        self._metric_logger.close()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run grpo_finetune_single_device --config <config> [key=value ...]``."""
    config.log_config(recipe_name="GRPOFinetuneRecipeSingleDevice", cfg=cfg)
    config.warn_unused_keys(cfg, CONFIG_KEYS)
    recipe = GRPOFinetuneRecipeSingleDevice(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    sys.exit(recipe_main())
