"""The maths of GRPO shared by its recipes: group sampling, group-normalised advantages, updates.

One GRPO step: each of ``b`` prompts is answered ``group_size`` times by the current policy
(:func:`generate_rollouts`), every answer is scored by verifiable reward functions, and each
answer's advantage is its reward normalised within its group (:func:`group_advantages`), so no
value model is needed. The policy then takes optimizer steps on the clipped objective with a
KL penalty to the reference (``torchtune.rlhf.loss.GRPOLoss``), micro-batch by micro-batch
(:func:`grpo_update`).
"""

from contextlib import nullcontext
from typing import Callable, ContextManager, Dict, List, NamedTuple, Optional, Sequence

import torch
from torch import nn

from torchtune.generation import generate
from torchtune.generation._masks import get_causal_mask_from_padding_mask, get_position_ids_from_padding_mask
from torchtune.modules.common_utils import local_kv_cache
from torchtune.rlhf.sequence_processing import (
    logits_to_logprobs,
    truncate_sequence_at_first_stop_token,
    truncate_sequence_for_logprobs,
)
from torchtune.training._grad_accumulation import GradientAccumulator


class Rollout(NamedTuple):
    """A batch of sampled answers and what GRPO's update needs of them.

    ``n`` sequences (prompts times ``group_size``, group members adjacent), ``p`` the left-padded
    prompt length, ``r`` the number of generated positions.

    Args:
        query_responses (torch.Tensor): ``[n, p + r]`` token ids, prompt padding and the
            padding after each answer's stop token set to 0 (a valid id for the forward).
        masks (torch.Tensor): ``[n, p + r, p + r]`` bool attention mask (causal, prompt padding hidden).
        position_ids (torch.Tensor): ``[n, p + r]`` positions, 0 at each row's first prompt token.
        response_mask (torch.Tensor): ``[n, r]`` bool, True at answer tokens (its stop token included).
        logprobs (torch.Tensor): ``[n, r]`` log-probs of the answer tokens under the rollout policy.
        ref_logprobs (torch.Tensor): ``[n, r]`` the same under the reference policy.
        rewards (torch.Tensor): ``[n]`` total reward of each answer.
        advantages (torch.Tensor): ``[n]`` group-normalised advantages.
    """

    query_responses: torch.Tensor
    masks: torch.Tensor
    position_ids: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    rewards: torch.Tensor
    advantages: torch.Tensor

    @property
    def context_length(self) -> int:
        """int: the padded prompt length ``p``."""
        return self.query_responses.shape[1] - self.response_mask.shape[1]

    def slice(self, start: int, end: int) -> "Rollout":
        """Rows ``start:end`` of every field."""
        return Rollout(*(field[start:end] for field in self))


def group_advantages(
    rewards: torch.Tensor, group_size: int, *, scale: bool = True, eps: float = 1e-4
) -> torch.Tensor:
    """Each reward minus its group's mean, divided by the group's standard deviation.

    Args:
        rewards (torch.Tensor): ``[n]`` rewards, the ``group_size`` answers to one prompt adjacent.
        group_size (int): answers per prompt (at least 2).
        scale (bool): divide by the (unbiased) group standard deviation plus ``eps``; False only
            centres (Dr. GRPO). Default True.
        eps (float): keeps groups whose answers all scored the same at advantage 0. Default 1e-4.

    Returns:
        torch.Tensor: ``[n]`` advantages in ``rewards``' dtype.

    Raises:
        ValueError: if ``group_size < 2`` or ``n`` is not a multiple of it.
    """
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2 (advantages compare answers to one prompt), got {group_size}")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards need shape [n] with n a multiple of group_size={group_size}, "
                         f"got {tuple(rewards.shape)}")
    groups = rewards.view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (groups.std(dim=1, keepdim=True) + eps)
    return centred.reshape(-1)


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Stack token lists into ``[n, max_len]``, padding each on the left with ``pad_id``."""
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for i, s in enumerate(sequences):
        if len(s) == 0:
            raise ValueError(f"prompt {i} has no tokens")
        out[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
    return out


def response_logprobs(
    model: nn.Module,
    query_responses: torch.Tensor,
    masks: torch.Tensor,
    position_ids: torch.Tensor,
    context_length: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Log-probabilities of the response tokens of ``[prompt; response]`` sequences.

    Args:
        model (nn.Module): decoder returning logits ``[n, s, v]``.
        query_responses (torch.Tensor): ``[n, s]`` token ids (valid ids everywhere).
        masks (torch.Tensor): ``[n, s, s]`` bool attention mask.
        position_ids (torch.Tensor): ``[n, s]`` positions.
        context_length (int): prompt length ``p``; the response is ``query_responses[:, p:]``.
        temperature (float): the sampling temperature (log-probs of the distribution sampled from).
            Default 1.0.

    Returns:
        torch.Tensor: ``[n, s - p]`` fp32 log-probabilities (with grad when the model has one).
    """
    logits = model(query_responses, input_pos=position_ids, mask=masks)
    logits = truncate_sequence_for_logprobs(logits, context_length)
    return logits_to_logprobs(logits, query_responses[:, context_length:], temperature)


RewardFn = Callable[[str, str], float]


@torch.no_grad()
def generate_rollouts(
    policy: nn.Module,
    prompts: Sequence[Sequence[int]],
    answers: Sequence[str],
    *,
    group_size: int,
    max_generated_tokens: int,
    pad_id: int,
    stop_tokens: Optional[List[int]],
    decode: Callable[[List[int]], str],
    reward_functions: Sequence[RewardFn],
    reference_context: Callable[[], ContextManager],
    reference: Optional[nn.Module] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    forward_batch_size: Optional[int] = None,
    enable_kv_cache: bool = True,
    advantage_scale: bool = True,
    rng: Optional[torch.Generator] = None,
    early_stop: bool = True,
) -> Dict[str, object]:
    """Sample ``group_size`` answers per prompt and score them: one GRPO rollout batch.

    Generation runs ``forward_batch_size`` sequences at a time through
    :func:`torchtune.generation.generate` (KV cache set up for the call when
    ``enable_kv_cache``). Each answer is cut after its first stop token; its text (stop token
    excluded) and the prompt's reference answer go to every reward function, and the rewards
    are summed. Log-probabilities under the policy and the reference are recomputed with a
    full forward (the same one the update uses, so the first update's ratio is exactly 1).

    Args:
        policy (nn.Module): the policy decoder; left in eval mode.
        prompts (Sequence[Sequence[int]]): ``b`` prompts as token lists.
        answers (Sequence[str]): the reference answer of each prompt.
        group_size (int): answers sampled per prompt.
        max_generated_tokens (int): answer length limit.
        pad_id (int): padding id (need not be a valid token id).
        stop_tokens (Optional[List[int]]): ids that end an answer (kept in it).
        decode (Callable[[List[int]], str]): token ids -> text (the tokenizer's ``decode``).
        reward_functions (Sequence[RewardFn]): ``fn(completion, answer) -> float`` each.
        reference_context (Callable[[], ContextManager]): entered around the reference forward
            (``disable_adapter(policy)`` for LoRA; ``nullcontext`` with a separate ``reference``).
        reference (Optional[nn.Module]): the reference model; None uses ``policy`` inside
            ``reference_context``. Default None.
        temperature (float): sampling temperature (> 0). Default 1.0.
        top_k (Optional[int]): top-k sampling. Default None.
        forward_batch_size (Optional[int]): sequences per generation / forward call; None for all.
            Default None.
        enable_kv_cache (bool): decode with a KV cache. Default True.
        advantage_scale (bool): ``scale`` of :func:`group_advantages`. Default True.
        rng (Optional[torch.Generator]): sampling generator; None for the global one. Default None.
        early_stop (bool): let generation end once every answer has stopped. False always runs
            ``max_generated_tokens`` steps (answers are still cut at their stop token): FSDP ranks
            must run the same number of forwards. Default True.

    Returns:
        Dict[str, object]: ``rollout`` (:class:`Rollout`), ``reward_components`` (``[n, k]`` per
        reward function), ``num_generated_tokens`` (answer tokens, an int).

    Raises:
        ValueError: if ``temperature`` is not positive or the prompts and answers disagree in number.
    """
    if temperature <= 0:
        raise ValueError(f"GRPO samples its answers: temperature must be > 0, got {temperature}")
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    device = next(policy.parameters()).device
    prompt_ids = left_pad(prompts, pad_id).repeat_interleave(group_size, dim=0).to(device)  # [n, p]
    n, p = prompt_ids.shape
    chunk = forward_batch_size or n
    reference = reference if reference is not None else policy
    policy.eval()
    was_training = reference.training
    reference.eval()

    outputs = []
    for start in range(0, n, chunk):
        prompt = prompt_ids[start:start + chunk]
        dtype = next(policy.parameters()).dtype
        cache = (local_kv_cache(policy, batch_size=prompt.shape[0], device=device, dtype=dtype,
                                decoder_max_seq_len=p + max_generated_tokens)
                 if enable_kv_cache else nullcontext())
        with cache:
            tokens, _ = generate(policy, prompt, max_generated_tokens=max_generated_tokens, pad_id=pad_id,
                                 temperature=temperature, top_k=top_k, stop_tokens=stop_tokens if early_stop else None,
                                 rng=rng)
        outputs.append(tokens[:, p:])
    r = max(o.shape[1] for o in outputs)
    responses = torch.cat([torch.nn.functional.pad(o, (0, r - o.shape[1]), value=pad_id) for o in outputs])
    if stop_tokens:
        after_stop, _ = truncate_sequence_at_first_stop_token(responses, torch.tensor(stop_tokens, device=device))
    else:
        after_stop = torch.zeros_like(responses, dtype=torch.bool)
    response_mask = ~after_stop  # [n, r]

    prompt_mask = (prompt_ids != pad_id).cumsum(dim=1) > 0  # False on the leading pad run
    full_mask = torch.cat([prompt_mask, torch.ones_like(response_mask)], dim=1)
    query_responses = torch.cat([prompt_ids, responses], dim=1).masked_fill(
        ~torch.cat([prompt_mask, response_mask], dim=1), 0)
    masks = get_causal_mask_from_padding_mask(full_mask)
    position_ids = get_position_ids_from_padding_mask(full_mask)

    logprobs, ref_logprobs = [], []
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        args = (query_responses[rows], masks[rows], position_ids[rows], p, temperature)
        logprobs.append(response_logprobs(policy, *args))
        with reference_context():
            ref_logprobs.append(response_logprobs(reference, *args))
    reference.train(was_training)

    components = torch.zeros(n, len(reward_functions))
    lengths = response_mask.sum(dim=1).tolist()
    for i in range(n):
        ids = responses[i, :lengths[i]].tolist()
        if stop_tokens and ids and ids[-1] in stop_tokens:
            ids = ids[:-1]
        text = decode(ids)
        for j, fn in enumerate(reward_functions):
            components[i, j] = float(fn(text, answers[i // group_size]))
    rewards = components.sum(dim=1).to(device)
    rollout = Rollout(
        query_responses=query_responses, masks=masks, position_ids=position_ids, response_mask=response_mask,
        logprobs=torch.cat(logprobs), ref_logprobs=torch.cat(ref_logprobs), rewards=rewards,
        advantages=group_advantages(rewards, group_size, scale=advantage_scale),
    )
    return {"rollout": rollout, "reward_components": components, "num_generated_tokens": int(response_mask.sum())}


def grpo_update(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    *,
    ppo_epochs: int = 1,
    ppo_batch_size: Optional[int] = None,
    gradient_accumulation_steps: int = 1,
    temperature: float = 1.0,
    optimizer_step: Callable[[], Optional[torch.Tensor]],
    on_step: Optional[Callable[[], None]] = None,
) -> Dict[str, float]:
    """The optimizer steps of one GRPO rollout batch.

    ``ppo_epochs`` passes over the rollout, each in mini-batches of ``ppo_batch_size`` sequences,
    one optimizer step per mini-batch; a mini-batch runs as ``gradient_accumulation_steps``
    micro-batches whose summed token losses are divided by the mini-batch's answer tokens
    (``training.GradientAccumulator``), so the split does not change the update. The rollout's
    log-probs are the "old" policy of the clipped ratio: the first step has ratio 1 and later
    ones are clipped.

    Args:
        model (nn.Module): the policy, put in train mode.
        loss_fn (nn.Module): :class:`~torchtune.rlhf.loss.GRPOLoss` (summed over tokens).
        optimizer (torch.optim.Optimizer): unused here but by ``optimizer_step``; kept for the caller's
            readability of what is stepped.
        rollout (Rollout): from :func:`generate_rollouts`.
        ppo_epochs (int): passes over the rollout. Default 1.
        ppo_batch_size (Optional[int]): sequences per optimizer step; None for the whole rollout.
        gradient_accumulation_steps (int): micro-batches per optimizer step. Default 1.
        temperature (float): the sampling temperature. Default 1.0.
        optimizer_step (Callable[[], Optional[torch.Tensor]]): clips, steps and zeroes the
            gradients (returns the gradient norm or None).
        on_step (Optional[Callable[[], None]]): called after each optimizer step (LR schedule).

    Returns:
        Dict[str, float]: means over the update's tokens of ``loss``, ``policy_loss``, ``kl``,
        ``ratios``, ``clipfrac``, plus ``num_tokens`` (answer tokens trained, summed over passes)
        and ``optimizer_steps``.

    Raises:
        ValueError: if the mini- or micro-batches do not divide the rollout evenly.
    """
    del optimizer
    n = rollout.query_responses.shape[0]
    mini = ppo_batch_size or n
    if n % mini or mini % gradient_accumulation_steps:
        raise ValueError(
            f"the rollout's {n} sequences must split into ppo_batch_size={mini} mini-batches and those into "
            f"gradient_accumulation_steps={gradient_accumulation_steps} micro-batches evenly"
        )
    micro = mini // gradient_accumulation_steps
    accumulator = GradientAccumulator(gradient_accumulation_steps)
    totals = torch.zeros(6)  # loss, policy_loss, kl, ratios, clipfrac, tokens
    steps = 0
    model.train()
    for _ in range(ppo_epochs):
        for start in range(0, n, micro):
            part = rollout.slice(start, start + micro)
            pi_logprobs = response_logprobs(model, part.query_responses, part.masks, part.position_ids,
                                            part.context_length, temperature)
            out = loss_fn(part.logprobs, pi_logprobs, part.ref_logprobs, part.advantages, part.response_mask)
            out.loss.backward()
            totals += torch.stack([out.loss.detach().float().cpu(), *(t.float().cpu() for t in out[1:])])
            if accumulator.micro_step(out.loss.detach(), out.num_tokens):
                accumulator.finish(model.parameters())
                optimizer_step()
                steps += 1
                if on_step is not None:
                    on_step()
    tokens = totals[5].clamp(min=1)
    stats = {k: float(v / tokens) for k, v in zip(("loss", "policy_loss", "kl", "ratios", "clipfrac"), totals[:5])}
    stats["num_tokens"] = float(totals[5])
    stats["optimizer_steps"] = steps
    return stats
