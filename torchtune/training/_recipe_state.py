"""The progress a fine-tuning recipe checkpoints and resumes: epochs, steps, seed, data position."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Dict, List, Mapping, Optional, Tuple

import torch
import torch.distributed as dist

from torchtune._errors import ResumeStateError
from torchtune.training.checkpointing._constants import (
    ADAPTER_DIRNAME,
    ADAPTER_KEY,
    ADAPTER_MODEL_FNAME,
    DATALOADER_KEY,
    EPOCHS_KEY,
    LR_SCHEDULER_KEY,
    MAX_STEPS_KEY,
    MODEL_KEY,
    OPT_KEY,
    RECIPE_STATE_DIRNAME,
    RECIPE_STATE_FNAME,
    RNG_KEY,
    SAVED_DIR_KEY,
    SAVED_EPOCH_KEY,
    SEED_KEY,
    STEPS_KEY,
    TOTAL_EPOCHS_KEY,
)
from torchtune.training.checkpointing._files import pick_resume_dir
from torchtune.training._distributed import broadcast_object
from torchtune.training.seed import set_seed
from torchtune.training._sampler import StatefulDistributedSampler
from torchtune.utils import get_logger
from torchtune.utils._distributed import get_world_size_and_rank

log = get_logger()

# Samples (over all ranks) of one optimizer step: batch_size * gradient_accumulation_steps * world_size.
# Saved so that a resumed run turns the sampler's position back into optimizer steps.
SAMPLES_PER_STEP_KEY = "samples_per_step"

# Every rank's global CPU generator state, indexed by rank (multi-rank runs only; RNG_KEY holds rank 0's).
# Each rank draws its own dropout masks, whose shapes follow its own batches, so the ranks' generators
# part after the first step; a resumed rank continues from its own state, not from rank 0's.
RANK_RNG_KEY = "rng_state_per_rank"

# What an intermediate checkpoint must hold for a run to resume from it.
RESUME_REQUIRED_KEYS = (SEED_KEY, EPOCHS_KEY, TOTAL_EPOCHS_KEY, STEPS_KEY, OPT_KEY, DATALOADER_KEY)


@dataclass
class RecipeState:
    """Where a fine-tuning run stands; saved into intermediate checkpoints and restored on resume.

    Args:
        seed (int): the seed of the run (data order, initial adapters).
        total_epochs (int): epochs the run trains for.
        max_steps_per_epoch (Optional[int]): cap on optimizer steps per epoch. Default None.
        epochs_run (int): epochs already finished. Default 0.
        global_step (int): optimizer steps already taken, over all epochs. Default 0.
        steps_into_epoch (int): optimizer steps already taken in the current epoch. Default 0.
    """

    seed: int
    total_epochs: int
    max_steps_per_epoch: Optional[int] = None
    epochs_run: int = 0
    global_step: int = 0
    steps_into_epoch: int = 0

    @classmethod
    def from_config(cls, cfg: Any) -> "RecipeState":
        """A fresh run's state: seeds the global generators from ``seed`` (None: a random seed).

        Args:
            cfg (Any): the recipe config (``seed``, ``epochs``, ``max_steps_per_epoch``).

        Returns:
            RecipeState
        """
        seed = set_seed(seed=cfg.get("seed", None))
        return cls(seed=seed, total_epochs=cfg.epochs, max_steps_per_epoch=cfg.get("max_steps_per_epoch", None))

    def resume_from(self, ckpt: Mapping[str, Any], enabled: bool, keys: Optional[Collection[str]] = None
                    ) -> Optional[Mapping[str, Any]]:
        """``restore(ckpt, keys)`` when ``enabled`` (``resume_from_checkpoint``).

        Returns:
            Optional[Mapping[str, Any]]: ``ckpt`` when resuming, else None.
        """
        if not enabled:
            return None
        self.restore(ckpt, keys)
        return ckpt

    def restore(self, ckpt: Mapping[str, Any], keys: Optional[Collection[str]] = None) -> None:
        """Continue from a checkpoint's recipe state (the dict ``load_checkpoint`` returns).

        A config seed that differs from the checkpoint's is replaced by the checkpoint's (with a
        warning), and the global generator is re-seeded with it.

        Args:
            ckpt (Mapping[str, Any]): the checkpoint dict, with the keys of ``RESUME_REQUIRED_KEYS``.
            keys (Optional[Collection[str]]): the checkpoint's keys where ``ckpt`` holds only
                part of it (distributed recipes broadcast the progress without the weights).
                Default None: the keys of ``ckpt``.

        Raises:
            ResumeStateError: (a ``KeyError``) naming the recipe-state keys the checkpoint lacks.
        """
        keys = ckpt.keys() if keys is None else keys
        missing = [k for k in RESUME_REQUIRED_KEYS if k not in keys]
        if missing:
            raise ResumeStateError(
                f"resume_from_checkpoint=True but the recipe state lacks {missing}; "
                "point checkpointer.recipe_checkpoint at a recipe_state.pt written by an intermediate save"
            )
        if self.seed != ckpt[SEED_KEY]:
            log.warning(f"Config seed {self.seed} differs from the checkpoint's; using {ckpt[SEED_KEY]}")
            self.seed = set_seed(seed=ckpt[SEED_KEY])
        self.epochs_run = ckpt[EPOCHS_KEY]
        self.global_step = ckpt[STEPS_KEY]
        self.steps_into_epoch = ckpt[DATALOADER_KEY]["samples_consumed"] // max(1, ckpt.get(SAMPLES_PER_STEP_KEY, 1))

    @staticmethod
    def restore_rng_state(ckpt: Optional[Mapping[str, Any]]) -> None:
        """Set the global CPU generator to the state saved in ``ckpt``; nothing when ``ckpt`` is None.

        In a process group, each rank takes its own saved state (``RANK_RNG_KEY``) when the
        checkpoint was written by as many ranks; otherwise (one process, or another number of
        ranks) the state of the saving run's rank 0 (``RNG_KEY``). Call it last in ``setup``,
        after everything that draws random numbers.
        """
        if ckpt is None:
            return
        world_size, rank = get_world_size_and_rank()
        per_rank = ckpt.get(RANK_RNG_KEY)
        if per_rank is not None and len(per_rank) == world_size:
            torch.set_rng_state(per_rank[rank])
        else:
            torch.set_rng_state(ckpt[RNG_KEY])

    def state_dict(
        self,
        *,
        optimizer: Dict[str, Any],
        dataloader: Dict[str, Any],
        samples_per_step: int,
        lr_scheduler: Optional[Dict[str, Any]] = None,
        rank_rng_states: Optional[List[torch.Tensor]] = None,
    ) -> Dict[str, Any]:
        """The recipe-state entries of an intermediate checkpoint, under the keys checkpointers write.

        The global RNG state is read here, at save time.

        Args:
            optimizer (Dict[str, Any]): the optimizer's (full, unsharded) state dict.
            dataloader (Dict[str, Any]): the sampler's ``state_dict(samples_consumed)``.
            samples_per_step (int): samples over all ranks per optimizer step.
            lr_scheduler (Optional[Dict[str, Any]]): the LR scheduler's state dict; None when the
                run has no scheduler. Default None.
            rank_rng_states (Optional[List[torch.Tensor]]): every rank's generator state
                (``gather_rng_states``), saved under ``RANK_RNG_KEY``; None on one process. Default None.

        Returns:
            Dict[str, Any]: ``{OPT_KEY, SEED_KEY, EPOCHS_KEY, TOTAL_EPOCHS_KEY, MAX_STEPS_KEY,
            STEPS_KEY, DATALOADER_KEY, RNG_KEY, SAMPLES_PER_STEP_KEY}`` plus ``LR_SCHEDULER_KEY``
            and ``RANK_RNG_KEY`` when given.
        """
        state = {
            OPT_KEY: optimizer,
            SEED_KEY: self.seed,
            EPOCHS_KEY: self.epochs_run,
            TOTAL_EPOCHS_KEY: self.total_epochs,
            MAX_STEPS_KEY: self.max_steps_per_epoch,
            STEPS_KEY: self.global_step,
            DATALOADER_KEY: dataloader,
            RNG_KEY: torch.get_rng_state(),
            SAMPLES_PER_STEP_KEY: samples_per_step,
        }
        if lr_scheduler is not None:
            state[LR_SCHEDULER_KEY] = lr_scheduler
        if rank_rng_states is not None:
            state[RANK_RNG_KEY] = [s.cpu() for s in rank_rng_states]
        return state


def gather_rng_states(device: Optional[torch.device] = None) -> Optional[List[torch.Tensor]]:
    """Every rank's global CPU generator state, on every rank; a collective all ranks must call.

    Args:
        device (Optional[torch.device]): the device collectives run on (a GPU under nccl; None or
            the CPU under gloo). Default None.

    Returns:
        Optional[List[torch.Tensor]]: the states (uint8, on the CPU) indexed by rank; None outside
        a process group of more than one rank.
    """
    world_size, _ = get_world_size_and_rank()
    if world_size == 1:
        return None
    mine = torch.get_rng_state().to(device or "cpu")
    states = [torch.empty_like(mine) for _ in range(world_size)]
    dist.all_gather(states, mine)
    return [s.cpu() for s in states]


def load_sampler_state(sampler: StatefulDistributedSampler, ckpt: Mapping[str, Any], world_size: int = 1) -> None:
    """Put a sampler back at the position saved in a checkpoint.

    Saved positions count samples over all ranks, so a run resumes on any number of ranks.

    Args:
        sampler (StatefulDistributedSampler): this rank's sampler.
        ckpt (Mapping[str, Any]): the checkpoint dict (with ``DATALOADER_KEY``).
        world_size (int): number of data-parallel ranks. Default 1.
    """
    state = dict(ckpt[DATALOADER_KEY])
    state["samples_consumed"] //= world_size
    sampler.load_state_dict(state)


def check_adapter_resumed(checkpoint_keys: Collection[str], output_dir: str) -> None:
    """Fail a LoRA resume whose checkpoint holds no adapter weights.

    Without them the run would draw fresh adapters while restoring the optimizer state of the
    trained ones.

    Args:
        checkpoint_keys (Collection[str]): keys of the dict ``load_checkpoint`` returned.
        output_dir (str): the checkpointer's ``output_dir`` (the run being resumed).

    Raises:
        FileNotFoundError: naming the adapter file the resumed folder lacks.
    """
    if ADAPTER_KEY in checkpoint_keys:
        return
    out = Path(output_dir)
    saved_epoch, saved_dir = None, None
    state_path = out / RECIPE_STATE_DIRNAME / RECIPE_STATE_FNAME
    if state_path.is_file():  # only to name the folder the checkpointer resumed from
        saved = torch.load(state_path, map_location="cpu", weights_only=False)
        saved_epoch, saved_dir = saved.get(SAVED_EPOCH_KEY), saved.get(SAVED_DIR_KEY)
    folder = pick_resume_dir(out, saved_epoch, saved_dir) or out / "<checkpoint folder>"
    raise FileNotFoundError(
        f"resume_from_checkpoint=True but the checkpoint has no adapter weights: "
        f"{folder / ADAPTER_DIRNAME / (ADAPTER_MODEL_FNAME + '.pt')} is missing; restore it, or point "
        "checkpointer.adapter_checkpoint at the adapter_model.pt of the run being resumed"
    )


# Checkpoint entries that stay on rank 0 until they are sharded; the rest goes to every rank.
_SHARDED_KEYS = (MODEL_KEY, ADAPTER_KEY, OPT_KEY)
# Added to a broadcast checkpoint: every key rank 0 loaded (weights included).
CHECKPOINT_KEYS_KEY = "_keys"


def load_recipe_checkpoint(
    cfg_checkpointer: Any,
    resume_from_checkpoint: bool,
    *,
    distributed: bool = False,
    is_rank_zero: bool = True,
    device: Optional[torch.device] = None,
) -> Tuple[Any, Dict[str, Any]]:
    """Build the checkpointer of a config and load the checkpoint (and recipe state when resuming).

    Distributed, only rank 0 builds the checkpointer and reads the files; the recipe progress (all
    but the weights and optimizer state) is broadcast to every rank, with the list of every key
    rank 0 loaded under ``CHECKPOINT_KEYS_KEY``; the weights stay on rank 0 until sharded.

    Args:
        cfg_checkpointer (Any): the ``checkpointer`` config node.
        resume_from_checkpoint (bool): load the recipe state too.
        distributed (bool): broadcast the progress from rank 0 (inside a process group). Default False.
        is_rank_zero (bool): whether this is rank 0. Default True.
        device (Optional[torch.device]): device for the broadcast (None on CPU / gloo). Default None.

    Returns:
        Tuple[Any, Dict[str, Any]]: the checkpointer (None off rank 0) and the checkpoint dict.
    """
    from torchtune import config  # deferred: torchtune.config is imported after torchtune.training here

    checkpointer, checkpoint = None, {}
    if is_rank_zero:
        checkpointer = config.instantiate(cfg_checkpointer, resume_from_checkpoint=resume_from_checkpoint)
        checkpoint = checkpointer.load_checkpoint()
    if not distributed:
        return checkpointer, checkpoint
    progress = {k: v for k, v in checkpoint.items() if k not in _SHARDED_KEYS}
    progress[CHECKPOINT_KEYS_KEY] = list(checkpoint)
    progress = broadcast_object(progress if is_rank_zero else None, device=device)
    return checkpointer, {**progress, **checkpoint}
