"""PPO (proximal policy optimisation, RLHF-style) full fine-tuning on one device.

    tune run ppo_full_finetune_single_device --config mistral/7B_full_ppo_low_memory

Four models: the trained policy, the frozen reference policy (the same base weights), a trained
value model and a frozen reward model (both classifier heads, ``reward_and_value_model``). The
algorithm, top to bottom:
1. per step, take ``batch_size`` prompts and generate a response to each with the policy
   (``torchtune.generation.generate``, KV cache when ``enable_kv_cache``); cut each response after
   its first stop token;
2. score it: the reward model's score at the last response token, replaced by ``reward_penalty``
   for responses that never stopped (``penalise_no_eos``) or are shorter than
   ``min_response_length``; per-token rewards are ``-kl_coeff * (logp - logp_ref)`` with the score
   added at the last token (``rlhf.get_rewards_ppo``, optionally whitened); advantages and returns
   by GAE on the value model's estimates (``rlhf.estimate_advantages``);
3. ``ppo_epochs`` passes over the trajectories in ``ppo_batch_size`` mini-batches
   (``gradient_accumulation_steps`` micro-batches each), one optimizer step of policy and value
   model per mini-batch on ``rlhf.loss.PPOLoss``;
4. log reward, KL and PPO statistics; save policy and value model at the end and every
   ``save_every_n_steps`` steps with the state to resume from exactly.
"""

import math
import sys
import time
from contextlib import nullcontext
from typing import Dict, List

import torch
from omegaconf import DictConfig

from torchtune import config, generation, modules, rlhf, training, utils
from torchtune.generation._masks import get_causal_mask_from_padding_mask, get_position_ids_from_padding_mask
from torchtune.modules.common_utils import local_kv_cache
from torchtune.rlhf._recipe import build_prompt_dataloader, save_rl_checkpoint

log = utils.get_logger("INFO")

CONFIG_KEYS = {
    "output_dir", "tokenizer", "dataset", "policy_model", "reward_and_value_model", "checkpointer",
    "ref_policy_checkpointer", "value_checkpointer", "reward_checkpointer", "resume_from_checkpoint", "seed",
    "shuffle", "device", "batch_size", "num_steps", "ppo_epochs", "ppo_batch_size", "gradient_accumulation_steps",
    "compile", "optimizer", "optimizer_in_bwd", "log_peak_memory_stats", "enable_activation_checkpointing",
    "enable_kv_cache", "dtype", "forward_batch_size", "max_generated_tokens", "temperature", "top_k",
    "min_response_length", "penalise_no_eos", "reward_penalty", "stop_token_ids", "whiten_rewards", "gamma", "lmbda",
    "loss", "kl_coeff", "metric_logger", "log_every_n_steps", "profiler", "save_every_n_steps", "clip_grad_norm",
}


class PPOFullFinetuneRecipeSingleDevice:
    """PPO of a policy against a reward model, with a value model, on one device.

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/mistral/7B_full_ppo_low_memory.yaml``).
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._resume = cfg.get("resume_from_checkpoint", False)
        self._batch_size = cfg.batch_size
        self._total_steps = cfg.num_steps // cfg.batch_size  # num_steps counts trajectories, as torchtune
        if self._total_steps < 1:
            raise ValueError(f"num_steps ({cfg.num_steps}) must be at least batch_size ({cfg.batch_size})")
        self._ppo_epochs = cfg.ppo_epochs
        self._ppo_batch_size = cfg.ppo_batch_size
        self._accumulation = cfg.get("gradient_accumulation_steps", 1)
        if cfg.batch_size % cfg.ppo_batch_size or cfg.ppo_batch_size % self._accumulation:
            raise ValueError(f"batch_size ({cfg.batch_size}) must split into ppo_batch_size ({cfg.ppo_batch_size}) "
                             f"mini-batches, and those into gradient_accumulation_steps ({self._accumulation})")
        self._forward_batch_size = cfg.get("forward_batch_size") or cfg.batch_size
        self._generation = dict(max_generated_tokens=cfg.max_generated_tokens, temperature=cfg.temperature,
                                top_k=cfg.get("top_k", None))
        self._enable_kv_cache = cfg.get("enable_kv_cache", True)
        self._penalty = dict(penalise_no_eos=cfg.get("penalise_no_eos", True),
                             min_response_length=cfg.get("min_response_length", None))
        self._reward_penalty = cfg.get("reward_penalty", -3.0)
        self._stop_tokens = list(cfg.get("stop_token_ids") or [])
        self._whiten_rewards = cfg.get("whiten_rewards", False)
        self._gamma, self._lmbda, self._kl_coeff = cfg.gamma, cfg.lmbda, cfg.kl_coeff
        self._clip_grad_norm = cfg.get("clip_grad_norm", None)
        self._save_every_n_steps = cfg.get("save_every_n_steps", None)
        if cfg.get("optimizer_in_bwd", False) or cfg.get("compile", False):
            log.warning("ppo_full_finetune_single_device: optimizer_in_bwd and compile are accepted but not applied; "
                        "the optimizer steps after backward and the models run eagerly")
        self.reward_history: List[float] = []  # mean reward-model score per step, for callers and tests

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build the four models, data, loss and optimizer; restore them when resuming."""
        self._metric_logger = training.setup_metric_logger(cfg)
        self._checkpointer, policy_ckpt = training.load_recipe_checkpoint(cfg.checkpointer, self._resume)
        self._value_checkpointer = config.instantiate(cfg.value_checkpointer, resume_from_checkpoint=self._resume)
        value_sd = self._value_checkpointer.load_checkpoint()[training.MODEL_KEY]
        ref_sd = config.instantiate(cfg.ref_policy_checkpointer).load_checkpoint()[training.MODEL_KEY]
        reward_sd = config.instantiate(cfg.reward_checkpointer).load_checkpoint()[training.MODEL_KEY]

        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._sampler, self._dataloader = build_prompt_dataloader(
            cfg.dataset, self._tokenizer, batch_size=cfg.batch_size, shuffle=cfg.shuffle,
            seed=training.set_seed(cfg.get("seed", None)))
        steps_per_epoch = len(self._dataloader)
        self._state = training.RecipeState(seed=self._sampler.seed, total_epochs=math.ceil(self._total_steps /
                                                                                              steps_per_epoch))
        resume = self._state.resume_from(policy_ckpt, self._resume)

        ac = cfg.get("enable_activation_checkpointing", False)
        self._policy = self._build(cfg.policy_model, policy_ckpt[training.MODEL_KEY], trainable=True, ac=ac)
        self._value = self._build(cfg.reward_and_value_model, value_sd, trainable=True, ac=ac)
        self._ref_policy = self._build(cfg.policy_model, ref_sd, trainable=False)
        self._reward = self._build(cfg.reward_and_value_model, reward_sd, trainable=False)
        training.log_model_info(self._policy, self._device, self._dtype,
                                log_memory=cfg.get("log_peak_memory_stats", False))

        self._loss_fn = config.instantiate(cfg.loss)
        params = [p for m in (self._policy, self._value) for p in m.parameters()]
        self._optimizer = config.instantiate(cfg.optimizer, params)
        if resume is not None:
            self._optimizer.load_state_dict(resume[training.OPT_KEY])
            training.load_sampler_state(self._sampler, resume)
        self._metrics = training.StepMetrics(self._metric_logger, self._device,
                                             log_every_n_steps=cfg.get("log_every_n_steps", 1),
                                             log_peak_memory_stats=cfg.get("log_peak_memory_stats", False))
        self._state.restore_rng_state(resume)

    def _build(self, cfg_model: DictConfig, state_dict: Dict[str, torch.Tensor], *, trainable: bool,
               ac: bool = False) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten
            with training.set_default_dtype(self._dtype), self._device:
                model = config.instantiate(cfg_model)
        model.load_state_dict(state_dict)
        if not trainable:
            return model.requires_grad_(False).eval()
        if ac:
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        return model

    # -------------------------------------------------------------- rollouts
    @torch.no_grad()
    def generate_trajectory(self, prompts: List[List[int]]) -> rlhf.Trajectory:
        """Responses to ``prompts`` and everything PPO scores on them (one :class:`~torchtune.rlhf.Trajectory`)."""
        pad_id = self._tokenizer.pad_id
        prompt = rlhf.left_pad(prompts, pad_id).to(self._device)  # [b, p]
        b, p = prompt.shape
        self._policy.eval()
        cache = (local_kv_cache(self._policy, batch_size=b, device=self._device, dtype=self._dtype,
                                decoder_max_seq_len=p + self._generation["max_generated_tokens"])
                 if self._enable_kv_cache else nullcontext())
        with cache:
            tokens, _ = generation.generate(self._policy, prompt, pad_id=pad_id, stop_tokens=self._stop_tokens or None,
                                            **self._generation)
        responses = tokens[:, p:]
        if self._stop_tokens:
            padding, responses = rlhf.truncate_sequence_at_first_stop_token(
                responses, torch.tensor(self._stop_tokens, device=self._device), fill_value=0)
        else:
            padding = torch.zeros_like(responses, dtype=torch.bool)
        prompt_mask = (prompt != pad_id).cumsum(dim=1) > 0
        full_mask = torch.cat([prompt_mask, torch.ones_like(padding)], dim=1)
        query_responses = torch.cat([prompt.masked_fill(~prompt_mask, 0), responses], dim=1)
        masks = get_causal_mask_from_padding_mask(full_mask)
        position_ids = get_position_ids_from_padding_mask(full_mask)
        args = (query_responses, masks, position_ids, p, self._generation["temperature"])
        logprobs = rlhf.response_logprobs(self._policy, *args)
        ref_logprobs = rlhf.response_logprobs(self._ref_policy, *args)
        values = self._value(query_responses, input_pos=position_ids, mask=masks)[:, p - 1:-1, 0].float()  # [b, r]

        seq_lens = (~padding).sum(dim=1)  # [b]
        value_seq_idxs = (seq_lens - 1).clamp(min=0)  # the last response token: where the score goes
        rows = torch.arange(b, device=self._device)
        scores = self._reward(query_responses, input_pos=position_ids, mask=masks)[rows, p + value_seq_idxs, 0].float()
        penalised = rlhf.get_reward_penalty_mask(padding, seq_lens, **self._penalty)
        scores = scores.masked_fill(penalised, float(self._reward_penalty))
        # Padding carries no KL and no value: log-probs equal there, values 0.
        logprobs, ref_logprobs = logprobs.masked_fill(padding, 1.0), ref_logprobs.masked_fill(padding, 1.0)
        values = values.masked_fill(padding, 0.0)
        return rlhf.Trajectory(
            query_responses=query_responses, logprobs=logprobs, ref_logprobs=ref_logprobs, values=values,
            masks=masks, position_ids=position_ids, response_padding_masks=padding, value_padding_masks=padding,
            value_seq_idxs=value_seq_idxs, scores=scores, seq_lens=seq_lens,
        )

    def generate_trajectory_batched(self, prompts: List[List[int]]) -> rlhf.Trajectory:
        """:meth:`generate_trajectory` ``forward_batch_size`` prompts at a time, concatenated (responses padded)."""
        parts = [self.generate_trajectory(prompts[i:i + self._forward_batch_size])
                 for i in range(0, len(prompts), self._forward_batch_size)]
        if len(parts) == 1:
            return parts[0]
        raise ValueError("forward_batch_size smaller than batch_size is not supported yet: set forward_batch_size "
                         f"to batch_size ({self._batch_size}) or null")

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Rollouts and PPO updates until ``num_steps // batch_size`` steps are done."""
        state = self._state
        steps_per_epoch = len(self._dataloader)
        for epoch in range(state.epochs_run, state.total_epochs):
            self._sampler.set_epoch(epoch)
            self._metrics.start_epoch(epoch, min(steps_per_epoch, self._total_steps - epoch * steps_per_epoch),
                                      state.steps_into_epoch)
            for batch in self._dataloader:
                if state.global_step >= self._total_steps:
                    break
                t0 = time.perf_counter()
                traj = self.generate_trajectory_batched(batch["tokens"])
                rewards, kl, _ = rlhf.get_rewards_ppo(traj.scores, traj.logprobs, traj.ref_logprobs, self._kl_coeff,
                                                      valid_score_idxs=traj.value_seq_idxs)
                valid = ~traj.response_padding_masks
                if self._whiten_rewards:
                    rewards = rlhf.whiten(rewards, mask=valid, shift_mean=False)
                advantages, returns = rlhf.estimate_advantages(traj.values, rewards, self._gamma, self._lmbda,
                                                               masks=valid)
                t1 = time.perf_counter()
                stats = self._ppo_update(traj, advantages, returns)
                state.global_step += 1
                state.steps_into_epoch += 1
                training.check_loss_finite(stats.loss, state.global_step)
                self._log(traj, kl, stats, t1 - t0, time.perf_counter() - t1)
                if training.every_n_steps(state.global_step, self._save_every_n_steps) and \
                        state.global_step < self._total_steps:
                    self.save_checkpoint(epoch, samples_consumed=state.steps_into_epoch * self._batch_size,
                                         intermediate=True)
            self._metrics.end_epoch()
            if state.global_step >= self._total_steps:
                break
            state.epochs_run += 1
            state.steps_into_epoch = 0
        self.save_checkpoint(state.epochs_run, samples_consumed=0, intermediate=False)

    def _ppo_update(self, traj: rlhf.Trajectory, advantages: torch.Tensor, returns: torch.Tensor) -> rlhf.PPOStats:
        self._policy.train()
        self._value.train()
        micro = self._ppo_batch_size // self._accumulation
        temperature = self._generation["temperature"]
        sums = torch.zeros(6)
        count = 0
        for _ in range(self._ppo_epochs):
            for start in range(0, self._batch_size, micro):
                rows = slice(start, start + micro)
                p = traj.query_responses.shape[1] - traj.logprobs.shape[1]
                args = (traj.query_responses[rows], traj.masks[rows], traj.position_ids[rows])
                pi_logprobs = rlhf.response_logprobs(self._policy, *args, p, temperature)
                valid = ~traj.response_padding_masks[rows]
                pi_logprobs = pi_logprobs.masked_fill(~valid, 1.0)
                phi_values = self._value(args[0], input_pos=args[2], mask=args[1])[:, p - 1:-1, 0].float()
                loss, policy_loss, value_loss, ratios, clipfrac = self._loss_fn(
                    traj.logprobs[rows], pi_logprobs, advantages[rows], traj.values[rows], phi_values,
                    returns[rows], padding_masks=valid, value_padding_masks=~traj.value_padding_masks[rows])
                # Each micro-batch's loss is a mean over its tokens: the window averages them.
                (loss / self._accumulation).backward()
                approx_kl = 0.5 * rlhf.masked_mean((pi_logprobs - traj.logprobs[rows]).pow(2), valid)
                sums += torch.stack([t.detach().float().cpu() for t in
                                     (loss, policy_loss, value_loss, ratios, clipfrac, approx_kl)])
                count += 1
                if count % self._accumulation == 0:
                    params = [q for m in (self._policy, self._value) for q in m.parameters()]
                    training.clip_gradients(params, self._clip_grad_norm)
                    self._optimizer.step()
                    self._optimizer.zero_grad(set_to_none=True)
        return rlhf.PPOStats(*(sums / count))

    def _log(self, traj: rlhf.Trajectory, kl: torch.Tensor, stats: rlhf.PPOStats, t_rollout: float,
             t_update: float) -> None:
        reward = float(traj.scores.mean())
        self.reward_history.append(reward)
        step = self._state.global_step
        num_tokens = int(traj.seq_lens.sum())
        self._metrics.step(step, float(stats.loss), num_tokens, self._optimizer)
        if step % self._metrics.log_every_n_steps == 0:
            valid = ~traj.response_padding_masks
            self._metric_logger.log_dict({
                "rlhf_reward": reward, "kl": float((kl * valid).sum(1).mean()),
                "kl_reward": float((-self._kl_coeff * kl * valid).sum(1).mean()),
                "policy_loss": float(stats.policy_loss), "value_loss": float(stats.value_loss),
                "ratios": float(stats.ratios), "clipfrac": float(stats.clipfrac),
                "approx_policy_kl": float(stats.approx_policy_kls),
                "response_lengths": float(traj.seq_lens.float().mean()),
                "rollout_tokens_per_second": num_tokens / max(t_rollout, 1e-9),
                "update_tokens_per_second": num_tokens * self._ppo_epochs / max(t_update, 1e-9),
            }, step=step)

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Save policy (``checkpointer``) and value model (``value_checkpointer``); with ``intermediate`` also
        the state to resume from."""
        policy_sd = {k: v.detach().cpu() for k, v in self._policy.state_dict().items()}
        save_rl_checkpoint(
            self._checkpointer, {training.MODEL_KEY: policy_sd}, self._state, self._sampler, epoch,
            samples_consumed=samples_consumed, samples_per_step=self._batch_size, intermediate=intermediate,
            optimizer_state=self._optimizer.state_dict() if intermediate else None,
        )
        # Written as "intermediate" (a recipe_state.pt naming its folder) so a resumed run finds it.
        value_sd = {k: v.detach().cpu() for k, v in self._value.state_dict().items()}
        step = self._state.global_step if samples_consumed > 0 else None
        self._value_checkpointer.save_checkpoint({training.MODEL_KEY: value_sd}, epoch=epoch,
                                                 intermediate_checkpoint=intermediate, step=step)

    def cleanup(self) -> None:
        self._metric_logger.close()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run ppo_full_finetune_single_device --config <config> [key=value ...]``."""
    config.log_config(recipe_name="PPOFullFinetuneRecipeSingleDevice", cfg=cfg)
    config.warn_unused_keys(cfg, CONFIG_KEYS)
    recipe = PPOFullFinetuneRecipeSingleDevice(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    sys.exit(recipe_main())
