"""The preference (DPO-family) pieces of the recipes: pair batches, the micro-batch objective, reward metrics.

A batch holds ``b`` pairs as ``2b`` rows, the chosen responses first (``padded_collate_preference``).
``preference_loss_step`` runs the policy once over all ``2b`` rows, and the reference once, under
``no_grad``, for the losses that compare with one; it returns the summed per-pair loss and the number
of pairs, so ``TrainLoop`` normalises gradients over the pairs of the whole accumulation window (and of
all ranks), exactly as one batch of all those pairs.
"""

import contextlib
import time
from functools import partial
from typing import Any, Callable, ContextManager, Dict, List, Mapping, Optional, Tuple

import torch
import torch.distributed as dist
from omegaconf import DictConfig

from torchtune.data import CROSS_ENTROPY_IGNORE_IDX, padded_collate_dpo
from torchtune.modules.peft import disable_adapter
from torchtune.rlhf import get_batch_log_probs
from torchtune.rlhf.loss import ORPOLoss, SimPOLoss
from torchtune.training._recipe_data import build_sft_dataloader, SFTData

# Rows of the batch -> their logits; called under no_grad.
ReferenceFn = Callable[[torch.Tensor], torch.Tensor]

_REFERENCE_FREE = (SimPOLoss, ORPOLoss)


def padded_collate_preference(
    batch: List[Mapping[str, List[int]]], padding_idx: int = 0, ignore_idx: int = CROSS_ENTROPY_IGNORE_IDX
) -> Dict[str, torch.Tensor]:
    """Preference pairs as one right-padded batch, chosen rows first (``padded_collate_dpo``), as a dict.

    Args:
        batch (List[Mapping[str, List[int]]]): ``b`` samples with ``chosen_input_ids``,
            ``chosen_labels``, ``rejected_input_ids`` and ``rejected_labels``.
        padding_idx (int): token id of padding. Default 0.
        ignore_idx (int): label of padding. Default -100.

    Returns:
        Dict[str, torch.Tensor]: ``tokens`` and ``labels`` ``[2b, s]`` (rows ``[:b]`` chosen, ``[b:]``
        rejected, pair ``i`` in rows ``i`` and ``b + i``) and ``num_tokens``, the unpadded tokens of all
        ``2b`` rows (a scalar, for tokens/s).
    """
    tokens, labels = padded_collate_dpo(batch, padding_idx=padding_idx, ignore_idx=ignore_idx)
    num_tokens = sum(len(x["chosen_input_ids"]) + len(x["rejected_input_ids"]) for x in batch)
    return {"tokens": tokens, "labels": labels, "num_tokens": torch.tensor(num_tokens)}


def setup_preference_data(
    cfg: DictConfig, tokenizer: Any, *, seed: int, num_replicas: int = 1, rank: int = 0
) -> SFTData:
    """Training (``dataset``) and optional validation (``dataset_val``) preference data of a recipe config.

    Reads ``dataset``, ``shuffle``, ``batch_size`` (pairs per rank) and ``dataset_val``, as
    ``setup_sft_data`` does, and batches pairs with ``padded_collate_preference``.

    Args:
        cfg (DictConfig): the recipe config.
        tokenizer (Any): the tokenizer the datasets use (its ``pad_id`` pads).
        seed (int): base seed of the shuffle.
        num_replicas (int): number of data-parallel ranks. Default 1.
        rank (int): this rank. Default 0.

    Returns:
        SFTData: sampler, dataloader and validation dataloader.

    Raises:
        ValueError: if ``group_by_length`` is set (pairs have two lengths; it is not supported).
    """
    if cfg.get("group_by_length", False):
        raise ValueError("group_by_length is not supported for preference data (each pair has two lengths); "
                         "set group_by_length=False")
    collate = partial(padded_collate_preference, padding_idx=tokenizer.pad_id, ignore_idx=CROSS_ENTROPY_IGNORE_IDX)
    common = dict(batch_size=cfg.batch_size, seed=seed, ignore_index=CROSS_ENTROPY_IGNORE_IDX,
                  num_replicas=num_replicas, rank=rank, collate_fn=collate)
    sampler, dataloader = build_sft_dataloader(cfg.dataset, tokenizer, shuffle=cfg.shuffle, **common)
    val_dataloader = None
    if cfg.get("dataset_val") is not None:
        _, val_dataloader = build_sft_dataloader(cfg.dataset_val, tokenizer, shuffle=False, **common)
    return SFTData(sampler, dataloader, val_dataloader)


def lora_reference(model: torch.nn.Module) -> ReferenceFn:
    """The reference of LoRA preference training: the same model with its adapters disabled.

    Args:
        model (torch.nn.Module): the model with LoRA / DoRA adapters.

    Returns:
        ReferenceFn: ``tokens [2b, s] -> logits [2b, s, v]`` of the base model, without gradients.
    """

    def reference(tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), disable_adapter(model):
            return model(tokens)

    return reference


def frozen_reference(ref_model: torch.nn.Module) -> ReferenceFn:
    """The reference of full preference training: a frozen copy of the base model, in eval mode.

    Args:
        ref_model (torch.nn.Module): the reference model; its parameters are frozen here.

    Returns:
        ReferenceFn: ``tokens [2b, s] -> logits [2b, s, v]``, without gradients.
    """
    ref_model.eval()
    for p in ref_model.parameters():
        p.requires_grad_(False)

    def reference(tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ref_model(tokens)

    return reference


class PreferenceMetrics:
    """Rewards, accuracy and tokens/s of the training pairs of each optimizer step.

    ``preference_loss_step`` adds every training micro-batch; ``compute`` (the ``step_metrics`` of
    ``TrainLoop.run``) sums over the window and, when distributed, over ranks, then starts the next
    window. With ``r_w``, ``r_l`` a pair's chosen and rejected rewards (``beta`` times the policy /
    reference log-ratio for DPO):

    - ``rewards/chosen``, ``rewards/rejected``: mean ``r_w``, ``r_l``;
    - ``rewards/accuracies``: fraction of pairs with ``r_w > r_l``;
    - ``rewards/margins``: mean ``r_w - r_l``;
    - ``log_probs/chosen``, ``log_probs/rejected``: mean policy log-probs of the responses;
    - ``tokens_per_second_per_gpu``: unpadded tokens of the pairs per second per rank.
    """

    _NAMES = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
              "log_probs/chosen", "log_probs/rejected")

    def __init__(self) -> None:
        self._sums: Optional[torch.Tensor] = None  # [6 metric sums, pairs, tokens]
        self._t0: Optional[float] = None

    def start(self) -> None:
        """Start the step timer (if not running): the first micro-batch of a window calls it."""
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def update(self, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, chosen_logps: torch.Tensor,
               rejected_logps: torch.Tensor, num_tokens: torch.Tensor) -> None:
        """Add one micro-batch (each tensor ``[b]``, ``num_tokens`` a scalar); no host sync."""
        row = torch.stack([
            chosen_rewards.sum(), rejected_rewards.sum(), (chosen_rewards > rejected_rewards).float().sum(),
            (chosen_rewards - rejected_rewards).sum(), chosen_logps.detach().sum(), rejected_logps.detach().sum(),
            torch.tensor(float(chosen_rewards.numel()), device=chosen_rewards.device),
            num_tokens.to(chosen_rewards.device, torch.float32),
        ]).float()
        self._sums = row if self._sums is None else self._sums + row

    def compute(self) -> Dict[str, float]:
        """Means over the window's pairs (all ranks), and tokens/s; resets for the next window.

        Every rank must call it when distributed (one all-reduce).
        """
        if self._sums is None:
            return {}
        sums, world_size = self._sums, 1
        if dist.is_available() and dist.is_initialized():
            sums, world_size = sums.clone(), dist.get_world_size()
            dist.all_reduce(sums)
        values = sums.tolist()
        elapsed = time.perf_counter() - (self._t0 or time.perf_counter())
        pairs = max(values[6], 1.0)
        out = {name: v / pairs for name, v in zip(self._NAMES, values[:6])}
        out["tokens_per_second_per_gpu"] = values[7] / world_size / max(elapsed, 1e-9)
        self._sums, self._t0 = None, time.perf_counter()
        return out


def preference_loss_step(
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    batch: Dict[str, torch.Tensor],
    activations_ctx: ContextManager = contextlib.nullcontext(),
    *,
    reference: Optional[ReferenceFn] = None,
    metrics: Optional[PreferenceMetrics] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Summed preference loss of one micro-batch of pairs, and its number of pairs.

    DPO and RSO take summed response log-probs of the policy and of ``reference`` (run first, under
    ``no_grad``: it needs no activations kept); SimPO and ORPO are reference-free and take log-probs
    averaged over each response's tokens. Log-probs count labelled tokens only (the responses, unless
    the dataset trains on the prompt), with next-token shifting (``rlhf.get_batch_log_probs``).

    Args:
        model (torch.nn.Module): the policy; ``model(tokens)`` gives logits ``[2b, s, v]``.
        loss_fn (torch.nn.Module): a ``torchtune.rlhf.loss`` preference loss.
        batch (Dict[str, torch.Tensor]): ``tokens``, ``labels`` ``[2b, s]`` and ``num_tokens``
            (``padded_collate_preference``).
        activations_ctx (ContextManager): entered around the policy forward (activation offloading).
        reference (Optional[ReferenceFn]): the reference model's logits; required unless the loss is
            reference-free. Default None.
        metrics (Optional[PreferenceMetrics]): collects rewards of training micro-batches (not while
            the model is in eval mode, as during validation). Default None.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: the summed per-pair loss (scalar) and the number of pairs.

    Raises:
        ValueError: if the loss needs a reference and none is given, or the batch has an odd number of rows.
    """
    tokens, labels = batch["tokens"], batch["labels"]
    if tokens.shape[0] % 2:
        raise ValueError(f"a preference batch has chosen and rejected rows (an even number), got {tokens.shape[0]}")
    if metrics is not None and model.training:
        metrics.start()
    num_pairs = tokens.shape[0] // 2
    reference_free = isinstance(loss_fn, _REFERENCE_FREE)
    if reference_free:
        ref_chosen = ref_rejected = None
    else:
        if reference is None:
            raise ValueError(f"{type(loss_fn).__name__} compares with a reference model; pass reference=")
        ref_logps = get_batch_log_probs(_as_tensor(reference(tokens)), labels)
        ref_chosen, ref_rejected = ref_logps[:num_pairs], ref_logps[num_pairs:]
    with activations_ctx:
        logits = _as_tensor(model(tokens))
    logps = get_batch_log_probs(logits, labels, return_average_logprobs=reference_free)
    del logits
    chosen, rejected = logps[:num_pairs], logps[num_pairs:]
    if reference_free:
        losses, chosen_rewards, rejected_rewards = loss_fn(chosen, rejected)
    else:
        losses, chosen_rewards, rejected_rewards = loss_fn(chosen, rejected, ref_chosen, ref_rejected)
    if metrics is not None and model.training:
        metrics.update(chosen_rewards, rejected_rewards, chosen, rejected, batch["num_tokens"])
    return losses.sum(), torch.tensor(num_pairs, device=losses.device)


def _as_tensor(logits: Any) -> torch.Tensor:
    # A model set to return logits in chunks (set_num_output_chunks) gives a list along the sequence.
    return torch.cat(logits, dim=1) if isinstance(logits, (list, tuple)) else logits
