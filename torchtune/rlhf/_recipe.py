"""Wiring the online RL recipes (GRPO, PPO) share: prompt batches, and checkpoints in the SFT format."""

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader

from torchtune import config
from torchtune.training._recipe_state import RecipeState
from torchtune.training._sampler import StatefulDistributedSampler


def _collate_prompts(batch: List[Dict[str, Any]]) -> Dict[str, List[Any]]:
    # Prompts stay token lists: the rollout pads them on the left, all group members alike.
    return {key: [item[key] for item in batch] for key in batch[0]}


def build_prompt_dataloader(
    cfg_dataset: Any, tokenizer: Any, *, batch_size: int, shuffle: bool, seed: int, num_replicas: int = 1,
    rank: int = 0,
) -> Tuple[StatefulDistributedSampler, DataLoader]:
    """The prompt dataset of a config, with a resumable sampler; batches are dicts of lists.

    Args:
        cfg_dataset (Any): the ``dataset`` node (e.g. ``torchtune.datasets.prompt_dataset``).
        tokenizer (Any): passed to the dataset builder first.
        batch_size (int): prompts per rollout batch on this rank.
        shuffle (bool): shuffle every epoch.
        seed (int): base seed of the shuffle.
        num_replicas (int): data-parallel ranks. Default 1.
        rank (int): this rank. Default 0.

    Returns:
        Tuple[StatefulDistributedSampler, DataLoader]: batches ``{"tokens": [[ids]...], "answer": [...]}``
        (the last incomplete batch dropped).
    """
    dataset = config.instantiate(cfg_dataset, tokenizer)
    sampler = StatefulDistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
    # The DataLoader draws a base seed from its generator at every new iterator; a private one keeps
    # the global generator, which samples the rollouts, identical between a run and its resumption.
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=_collate_prompts, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    return sampler, loader


def save_rl_checkpoint(
    checkpointer: Any,
    weights: Dict[str, Any],
    state: RecipeState,
    sampler: StatefulDistributedSampler,
    epoch: int,
    *,
    samples_consumed: int,
    samples_per_step: int,
    intermediate: bool,
    optimizer_state: Optional[Dict[str, Any]] = None,
    lr_scheduler: Optional[Any] = None,
    **save_kwargs: Any,
) -> None:
    """Write a checkpoint exactly as the fine-tuning recipes do (``TrainLoop.save``).

    A mid-epoch save (``samples_consumed > 0``) goes to ``step_{global_step}/``; an intermediate one
    also writes ``recipe_state.pt`` (optimizer, LR schedule, seed, progress, sampler position, RNG),
    so ``resume_from_checkpoint=True`` continues with the same rollouts.

    Args:
        checkpointer (Any): the recipe's checkpointer.
        weights (Dict[str, Any]): ``MODEL_KEY`` and / or ``ADAPTER_KEY`` (+ ``ADAPTER_CONFIG``) entries.
        state (RecipeState): the run's progress.
        sampler (StatefulDistributedSampler): the prompt sampler.
        epoch (int): the epoch being trained (0-based).
        samples_consumed (int): prompts of the epoch consumed over all ranks; 0 at an epoch's end.
        samples_per_step (int): prompts over all ranks per recipe step.
        intermediate (bool): more training follows; save the state to resume from.
        optimizer_state (Optional[Dict[str, Any]]): the full optimizer state dict. Default None.
        lr_scheduler (Optional[Any]): the LR scheduler, if any. Default None.
        **save_kwargs (Any): passed to ``checkpointer.save_checkpoint``.
    """
    ckpt = dict(weights)
    if intermediate:
        ckpt.update(state.state_dict(
            optimizer=optimizer_state, dataloader=sampler.state_dict(samples_consumed),
            samples_per_step=samples_per_step,
            lr_scheduler=None if lr_scheduler is None else lr_scheduler.state_dict(),
        ))
    step = state.global_step if samples_consumed > 0 else None
    checkpointer.save_checkpoint(ckpt, epoch=epoch, intermediate_checkpoint=intermediate, step=step, **save_kwargs)
