"""Data for the fine-tuning recipes: datasets from config, sampler, collate and DataLoader."""

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Optional, Tuple

import torch
from omegaconf import DictConfig, ListConfig
from torch.utils.data import ConcatDataset, DataLoader

from torchtune import config
from torchtune.data import padded_collate_packed, padded_collate_sft
from torchtune.training._length_grouped_sampler import LengthGroupedSampler
from torchtune.training._sampler import StatefulDistributedSampler
from torchtune.utils import get_logger

log = get_logger()


def build_sft_dataloader(
    cfg_dataset: Any,
    tokenizer: Any,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    ignore_index: int,
    group_by_length: bool = False,
    num_replicas: int = 1,
    rank: int = 0,
    collate_fn: Optional[Callable] = None,
) -> Tuple[StatefulDistributedSampler, DataLoader]:
    """Build the dataset(s) of a config node and the resumable sampler and DataLoader over them.

    Args:
        cfg_dataset (Any): a dataset config node, or a list of them (concatenated in order).
        tokenizer (Any): passed to every dataset builder as its first argument.
        batch_size (int): samples per batch on this rank.
        shuffle (bool): shuffle every epoch.
        seed (int): base seed of the shuffle.
        ignore_index (int): label value of padding (the loss's ``ignore_index``).
        group_by_length (bool): batch samples of similar length (``LengthGroupedSampler``);
            reads every sample once to measure it. Default False.
        num_replicas (int): number of data-parallel ranks. Default 1.
        rank (int): this rank. Default 0.
        collate_fn (Optional[Callable]): batches the samples (preference pairs:
            ``training.padded_collate_preference``); None for the SFT collates below. Default None.

    Returns:
        Tuple[StatefulDistributedSampler, DataLoader]: the sampler (for ``set_epoch`` and resuming)
        and the DataLoader, which drops the last incomplete batch. Packed datasets (any of them
        with ``packed: True``) are collated with ``padded_collate_packed``, others are
        right-padded with ``padded_collate_sft``.

    Raises:
        ValueError: if ``group_by_length`` is asked for on packed data.
    """
    if isinstance(cfg_dataset, ListConfig):
        dataset = ConcatDataset([config.instantiate(c, tokenizer) for c in cfg_dataset])
        packed = any(c.get("packed", False) for c in cfg_dataset)
    else:
        dataset = config.instantiate(cfg_dataset, tokenizer)
        packed = cfg_dataset.get("packed", False)
    if group_by_length:
        if packed:
            raise ValueError("group_by_length=True needs unpacked samples: packs all have the same length; "
                             "set dataset.packed=False or group_by_length=False")
        # One pass over the data for the lengths; batches then pad far less (see LengthGroupedSampler).
        t0 = time.perf_counter()
        lengths = [len(dataset[i]["tokens"]) for i in range(len(dataset))]
        log.info(f"group_by_length: measured {len(lengths)} samples in {time.perf_counter() - t0:.1f} s")
        sampler = LengthGroupedSampler(dataset, lengths, batch_size, num_replicas=num_replicas, rank=rank,
                                       shuffle=shuffle, seed=seed)
    else:
        sampler = StatefulDistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                                             seed=seed)
    collate = collate_fn or (
        padded_collate_packed
        if packed
        else partial(padded_collate_sft, padding_idx=tokenizer.pad_id, ignore_idx=ignore_index)
    )
    # Every new iterator draws a base seed from the DataLoader's generator: a private one leaves the
    # global generator (dropout masks) where a resumed run, which restores it, expects it.
    dataloader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, drop_last=True,
                            generator=torch.Generator().manual_seed(seed))
    return sampler, dataloader


def get_steps_per_epoch(
    num_batches: int, gradient_accumulation_steps: int, max_steps_per_epoch: Optional[int] = None, world_size: int = 1
) -> int:
    """Optimizer steps in one epoch: full accumulation windows, capped by ``max_steps_per_epoch``.

    Args:
        num_batches (int): batches per epoch on one rank (``len(dataloader)``).
        gradient_accumulation_steps (int): micro-batches per optimizer step.
        max_steps_per_epoch (Optional[int]): cap; None for no cap. Default None.
        world_size (int): number of data-parallel ranks, for the error message. Default 1.

    Returns:
        int: at least 1.

    Raises:
        ValueError: if there are fewer batches than one accumulation window (no step would run).
    """
    steps = num_batches // gradient_accumulation_steps
    if max_steps_per_epoch is not None:
        steps = min(steps, max_steps_per_epoch)
    if steps == 0:
        who = "The dataset gives" if world_size == 1 else f"Each of the {world_size} ranks gets"
        raise ValueError(
            f"{who} {num_batches} batches per epoch, fewer than gradient_accumulation_steps="
            f"{gradient_accumulation_steps} (or max_steps_per_epoch={max_steps_per_epoch}): "
            "no optimizer step would run"
        )
    return steps


@dataclass
class SFTData:
    """The data of a fine-tuning run.

    Args:
        sampler (StatefulDistributedSampler): the training sampler (``set_epoch``, resuming).
        dataloader (DataLoader): training batches of this rank.
        val_dataloader (Optional[DataLoader]): validation batches of this rank, if configured.
        tokenizer (Any): the tokenizer that produced the token ids; ``TrainLoop.run`` checks its
            vocabulary against the model's embedding. Default None (not checked).
    """

    sampler: StatefulDistributedSampler
    dataloader: DataLoader
    val_dataloader: Optional[DataLoader] = None
    tokenizer: Any = None


def setup_sft_data(
    cfg: DictConfig, tokenizer: Any, *, ignore_index: int, seed: int, num_replicas: int = 1, rank: int = 0
) -> SFTData:
    """Build the training (``dataset``) and optional validation (``dataset_val``) data of a recipe config.

    Reads ``dataset``, ``shuffle``, ``batch_size``, ``group_by_length`` (default False) and
    ``dataset_val`` (default none; never shuffled or grouped) through ``build_sft_dataloader``.

    Args:
        cfg (DictConfig): the recipe config.
        tokenizer (Any): the tokenizer the datasets use.
        ignore_index (int): label value of padding (the loss's ``ignore_index``).
        seed (int): base seed of the shuffle.
        num_replicas (int): number of data-parallel ranks. Default 1.
        rank (int): this rank. Default 0.

    Returns:
        SFTData: sampler, dataloader and validation dataloader.
    """
    common = dict(batch_size=cfg.batch_size, seed=seed, ignore_index=ignore_index, num_replicas=num_replicas,
                  rank=rank)
    sampler, dataloader = build_sft_dataloader(
        cfg.dataset, tokenizer, shuffle=cfg.shuffle, group_by_length=cfg.get("group_by_length", False), **common
    )
    val_dataloader = None
    if cfg.get("dataset_val") is not None:
        _, val_dataloader = build_sft_dataloader(cfg.dataset_val, tokenizer, shuffle=False, **common)
    return SFTData(sampler, dataloader, val_dataloader, tokenizer=tokenizer)
