"""The epoch / step loop of the fine-tuning recipes: micro-batches, optimizer steps, metrics, saves."""

import signal
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from torchtune._errors import DataError
from torchtune.training._activation_offloading import get_act_offloading_ctx_manager
from torchtune.training._grad_accumulation import check_loss_finite, GradientAccumulator
from torchtune.training._padding_free import supports_padding_free
from torchtune.training._preemption import agree_on_stop, report_stop, StopSignals, TrainingStopped
from torchtune.training._recipe_components import optimizer_step, setup_lr_scheduler, setup_profiler, sft_loss_step
from torchtune.training._recipe_data import get_steps_per_epoch, SFTData
from torchtune.training._recipe_state import gather_rng_states, load_sampler_state, RecipeState
from torchtune.training._setup_checks import check_vocab_fits
from torchtune.training.lr_schedulers import get_lr
from torchtune.training.memory import cleanup_before_training, get_memory_stats
from torchtune.utils import get_logger

log = get_logger("INFO")

LossStep = Callable[[Dict[str, torch.Tensor]], Tuple[torch.Tensor, torch.Tensor]]


def every_n_steps(step: int, n: Optional[int]) -> bool:
    """Whether something configured as "every ``n`` steps" (None or 0: never) runs after ``step``."""
    return bool(n) and step % n == 0


def should_save_mid_epoch(state: RecipeState, steps_per_epoch: int, save_every_n_steps: Optional[int]) -> bool:
    """Whether to write an intermediate checkpoint after the step just taken.

    Every ``save_every_n_steps`` optimizer steps, except after the last step of an epoch, which the
    end-of-epoch save covers.

    Args:
        state (RecipeState): the progress after the step.
        steps_per_epoch (int): optimizer steps per epoch.
        save_every_n_steps (Optional[int]): the cadence; None or 0 for end-of-epoch saves only.

    Returns:
        bool
    """
    return every_n_steps(state.global_step, save_every_n_steps) and state.steps_into_epoch < steps_per_epoch


def _next_batch(batches: Iterator) -> Tuple[Optional[Dict[str, torch.Tensor]], Optional[BaseException]]:
    """The next batch, or ``(None, None)`` at the end of the data, or ``(None, error)`` if reading it failed."""
    try:
        return next(batches), None
    except StopIteration:
        return None, None
    except Exception as err:  # any failure to read or collate data; the loop decides what follows
        return None, err

@torch.no_grad()
def validation_loss(model: torch.nn.Module, dataloader: Iterable, loss_step: LossStep,
                    device: torch.device) -> float:
    """Mean token cross-entropy over a validation set, over all ranks when distributed.

    Args:
        model (torch.nn.Module): put in eval mode for the pass, back in train mode after.
        dataloader (Iterable): batches of this rank's slice of the validation set.
        loss_step (LossStep): batch -> (summed loss, trained tokens), e.g. ``sft_loss_step``.
        device (torch.device): where the batches go.

    Returns:
        float: summed loss / trained tokens (0 tokens count as 1).
    """
    model.eval()
    totals = torch.zeros(2, device=device)  # [summed loss, trained tokens]
    for batch in dataloader:
        loss, num_tokens = loss_step({k: v.to(device) for k, v in batch.items()})
        totals += torch.stack([loss.float(), num_tokens.float()])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    model.train()
    return (totals[0] / totals[1].clamp(min=1)).item()


class StepMetrics:
    """Per-step progress bar and metrics (loss, lr, tokens/s, grad norm, memory) of rank 0.

    Args:
        metric_logger (Any): a ``torchtune.training.metric_logging`` logger (None off rank 0).
        device (torch.device): device whose memory is reported.
        log_every_n_steps (int): log metrics every this many steps. Default 1.
        log_peak_memory_stats (bool): add ``get_memory_stats`` to the metrics. Default False.
        world_size (int): ranks the tokens are spread over (tokens/s is per rank). Default 1.
        is_rank_zero (bool): only rank 0 shows and logs. Default True.
    """

    def __init__(self, metric_logger: Any, device: torch.device, *, log_every_n_steps: int = 1,
                 log_peak_memory_stats: bool = False, world_size: int = 1, is_rank_zero: bool = True) -> None:
        self.metric_logger = metric_logger
        self.device = device
        self.log_every_n_steps = log_every_n_steps
        self.log_peak_memory_stats = log_peak_memory_stats
        self.world_size = world_size
        self.is_rank_zero = is_rank_zero
        self._pbar: Optional[tqdm] = None
        self._t0 = 0.0

    def start_epoch(self, epoch: int, steps_per_epoch: int, steps_done: int) -> None:
        """Open the progress bar of ``epoch`` (0-based) and start the step timer."""
        self._pbar = tqdm(total=steps_per_epoch, initial=steps_done, desc=f"epoch {epoch + 1}", dynamic_ncols=True,
                          disable=not self.is_rank_zero)
        self._t0 = time.perf_counter()

    def step(self, step: int, loss: float, num_tokens: Any, lr_source: Any,
             grad_norm: Optional[torch.Tensor] = None, extra: Optional[Dict[str, float]] = None) -> None:
        """Record one optimizer step; the time since the previous one gives tokens/s.

        Args:
            step (int): the global step just taken (1-based).
            loss (float): its token-normalised loss.
            num_tokens (Any): tokens trained in the step, summed over ranks.
            lr_source (Any): optimizer (or optimizer-in-backward wrapper) to read the lr from.
            grad_norm (Optional[torch.Tensor]): the gradient norm before clipping. Default None.
            extra (Optional[Dict[str, float]]): more metrics of the step (a recipe's ``step_metrics``);
                a ``tokens_per_second_per_gpu`` here replaces the one computed from ``num_tokens``
                (for objectives normalised by something other than tokens). Default None.
        """
        elapsed = time.perf_counter() - self._t0
        self._t0 = time.perf_counter()
        if not self.is_rank_zero:
            return
        tokens_per_second = (extra or {}).get("tokens_per_second_per_gpu", num_tokens / elapsed / self.world_size)
        lr = get_lr(lr_source)
        self._pbar.update(1)
        self._pbar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_second:.0f}")
        if step % self.log_every_n_steps == 0:
            metrics = {"loss": loss, "lr": lr, "tokens_per_second_per_gpu": tokens_per_second}
            if grad_norm is not None:
                metrics["grad_norm"] = float(grad_norm)
            metrics.update(extra or {})
            if self.log_peak_memory_stats:
                metrics.update(get_memory_stats(device=self.device))
            self.metric_logger.log_dict(metrics, step=step)

    def log(self, name: str, value: float, step: int) -> None:
        """Log one more value (e.g. ``val_loss``) on rank 0."""
        if self.is_rank_zero:
            self.metric_logger.log(name, value, step=step)

    def end_epoch(self) -> None:
        """Close the progress bar."""
        if self._pbar is not None:
            self._pbar.close()


class TrainLoop:
    """Epochs of token-normalised optimizer steps, as every fine-tuning recipe runs them.

    Per optimizer step: ``gradient_accumulation_steps`` micro-batches, each a forward
    (``sft_loss_step``, summed token loss) and a backward; the gradients are divided by the
    trained tokens of the whole window (over all ranks, ``GradientAccumulator``); the loss is
    checked to be finite; ``optimizer_step`` (clip, step, zero the gradients) and the LR
    scheduler step; metrics; validation and a mid-epoch save at their cadence. Each epoch ends
    with a save. An epoch stops after ``steps_per_epoch`` steps; a resumed run starts at
    ``state.steps_into_epoch``.

    Stopping early (see docs/reliability.md): on SIGTERM, SIGINT or SIGUSR1 the loop finishes the
    optimizer step it is in, saves a mid-epoch checkpoint (as ``save_every_n_steps`` does), prints
    the folder and the command that resumes, and raises ``TrainingStopped`` (exit status 128 +
    signal); a second signal aborts at once. When reading a batch fails (a bad row), the state
    after the last finished step is saved the same way before the error propagates. Before each
    micro-batch the ranks all-reduce two flags (signalled, failed), so all stop at the same step.

    Args:
        state (RecipeState): the progress, updated as the loop runs.
        data (SFTData): training (and validation) data of this rank.
        device (torch.device): where batches go.
        steps_per_epoch (int): optimizer steps per epoch.
        gradient_accumulation_steps (int): micro-batches per optimizer step.
        metrics (StepMetrics): progress bar and metric logging.
        profiler (Any): has ``start``, ``step``, ``stop``.
        lr_scheduler (Optional[Any]): stepped after every optimizer step. Default None.
        clip_grad_norm (Optional[float]): clip the gradient norm to this; None for no clipping. Default None.
        world_size (int): number of data-parallel ranks. Default 1.
        enable_activation_offloading (bool): offload activations to CPU in the forward
            (``get_act_offloading_ctx_manager``). Default False.
        run_val_every_n_steps (Optional[int]): validation cadence; None for none. Default None.
        save_every_n_steps (Optional[int]): mid-epoch save cadence; None for none. Default None.
        output_dir (Optional[str]): the checkpointer's ``output_dir``, named when a stop signal or a
            data error ends the run. Default None.
        padding_free (bool): run the SFT objective on padding-free micro-batches
            (``training.remove_padding``) when the model supports it
            (``training.supports_padding_free``); the loss and gradients are the padded batch's.
            Default True.

    Attributes:
        samples_per_step (int): samples over all ranks per optimizer step.
    """

    def __init__(self, state: RecipeState, data: SFTData, *, device: torch.device, steps_per_epoch: int,
                 gradient_accumulation_steps: int, metrics: StepMetrics, profiler: Any,
                 lr_scheduler: Optional[Any] = None, clip_grad_norm: Optional[float] = None, world_size: int = 1,
                 enable_activation_offloading: bool = False, run_val_every_n_steps: Optional[int] = None,
                 save_every_n_steps: Optional[int] = None, output_dir: Optional[str] = None,
                 padding_free: bool = True) -> None:
        self.state = state
        self.data = data
        self.device = device
        self.steps_per_epoch = steps_per_epoch
        self.metrics = metrics
        self.profiler = profiler
        self.lr_scheduler = lr_scheduler
        self.clip_grad_norm = clip_grad_norm
        self.enable_activation_offloading = enable_activation_offloading
        self.run_val_every_n_steps = run_val_every_n_steps
        self.save_every_n_steps = save_every_n_steps
        self.output_dir = output_dir
        self.padding_free = padding_free
        self._saved_at_step: Optional[int] = None  # global step of the latest save of this run
        self._rank_rng_states: Optional[List[torch.Tensor]] = None  # every rank's generator, for ``save``
        self.accumulator = GradientAccumulator(gradient_accumulation_steps)
        self.samples_per_step = gradient_accumulation_steps * data.dataloader.batch_size * world_size

    @classmethod
    def from_config(cls, cfg: DictConfig, state: RecipeState, data: SFTData, metric_logger: Any,
                    device: torch.device, *, optimizer: torch.optim.Optimizer, ckpt: Optional[Dict[str, Any]] = None,
                    world_size: int = 1, is_rank_zero: bool = True) -> "TrainLoop":
        """The loop of a recipe config, with its LR schedule; resumed from ``ckpt`` if given.

        Reads ``gradient_accumulation_steps`` (default 1), ``log_every_n_steps`` (1),
        ``log_peak_memory_stats`` (False), ``clip_grad_norm`` (none), ``enable_activation_offloading``
        (False), ``lr_scheduler`` (none), ``profiler`` (none), ``run_val_every_n_steps`` and
        ``save_every_n_steps`` (none) and ``padding_free`` (True). Resuming puts the sampler back at its saved position and
        restores the LR schedule.

        Args:
            cfg (DictConfig): the recipe config.
            state (RecipeState): the run's progress (``max_steps_per_epoch`` caps the epochs).
            data (SFTData): the training data.
            metric_logger (Any): the metric logger (None off rank 0).
            device (torch.device): where batches go.
            optimizer (torch.optim.Optimizer): the optimizer the LR schedule drives.
            ckpt (Optional[Dict[str, Any]]): the checkpoint dict when resuming. Default None.
            world_size (int): number of data-parallel ranks. Default 1.
            is_rank_zero (bool): whether this rank shows and logs progress. Default True.

        Returns:
            TrainLoop

        Raises:
            ValueError: if an epoch would have no optimizer step (``get_steps_per_epoch``).
        """
        accumulation = cfg.get("gradient_accumulation_steps", 1)
        steps = get_steps_per_epoch(len(data.dataloader), accumulation, state.max_steps_per_epoch, world_size)
        metrics = StepMetrics(metric_logger, device, log_every_n_steps=cfg.get("log_every_n_steps", 1),
                              log_peak_memory_stats=cfg.get("log_peak_memory_stats", False), world_size=world_size,
                              is_rank_zero=is_rank_zero)
        lr_scheduler = setup_lr_scheduler(cfg.get("lr_scheduler"), optimizer,
                                          num_training_steps=state.total_epochs * steps,
                                          last_epoch=state.global_step - 1, ckpt=ckpt)
        if ckpt is not None:
            load_sampler_state(data.sampler, ckpt, world_size)
        return cls(state, data, device=device, steps_per_epoch=steps,
                   gradient_accumulation_steps=accumulation, metrics=metrics,
                   profiler=setup_profiler(cfg.get("profiler", None)), lr_scheduler=lr_scheduler,
                   clip_grad_norm=cfg.get("clip_grad_norm", None), world_size=world_size,
                   enable_activation_offloading=cfg.get("enable_activation_offloading", False),
                   run_val_every_n_steps=cfg.get("run_val_every_n_steps", None),
                   save_every_n_steps=cfg.get("save_every_n_steps", None),
                   output_dir=OmegaConf.select(cfg, "checkpointer.output_dir", default=None),
                   padding_free=cfg.get("padding_free", True))

    def save(self, checkpointer: Any, weights: Dict[str, Any], epoch: int, *, samples_consumed: int,
             intermediate: bool, optimizer_state: Optional[Dict[str, Any]] = None, **save_kwargs: Any) -> None:
        """Write a checkpoint: the weights and, when ``intermediate``, the state to resume from here.

        Args:
            checkpointer (Any): the recipe's checkpointer.
            weights (Dict[str, Any]): ``MODEL_KEY`` and / or ``ADAPTER_KEY`` (+ ``ADAPTER_CONFIG``) entries.
            epoch (int): the epoch being trained (0-based).
            samples_consumed (int): samples of the epoch consumed, over all ranks; 0 at the end of an epoch.
            intermediate (bool): more training follows; save the optimizer, LR schedule, sampler
                position, seed, progress and RNG state (``RecipeState.state_dict``).
            optimizer_state (Optional[Dict[str, Any]]): the full optimizer state dict, when
                ``intermediate``. Default None.
            **save_kwargs (Any): passed to ``checkpointer.save_checkpoint`` (``adapter_only``,
                ``keep_last_n_checkpoints``).
        """
        state = dict(weights)
        if intermediate:
            state.update(self.state.state_dict(
                optimizer=optimizer_state,
                dataloader=self.data.sampler.state_dict(samples_consumed),
                samples_per_step=self.samples_per_step,
                lr_scheduler=None if self.lr_scheduler is None else self.lr_scheduler.state_dict(),
                rank_rng_states=self._rank_rng_states,
            ))
        step = self.state.global_step if samples_consumed > 0 else None  # a mid-epoch save gets a step folder
        checkpointer.save_checkpoint(state, epoch=epoch, intermediate_checkpoint=intermediate, step=step, **save_kwargs)

    def run(
        self,
        model: torch.nn.Module,
        loss_fn: torch.nn.Module,
        optimizer: Any,
        *,
        save_checkpoint: Callable[..., None],
        optimizer_in_backward: bool = False,
        loss_step: Optional[Callable[..., Tuple[torch.Tensor, torch.Tensor]]] = None,
        step_metrics: Optional[Callable[[], Dict[str, float]]] = None,
    ) -> None:
        """Train ``model`` until ``state.total_epochs`` are done.

        Args:
            model (torch.nn.Module): the model (in train mode; in eval mode while validating).
            loss_fn (torch.nn.Module): the loss, prepared with ``prepare_loss``.
            optimizer (Any): the optimizer; with ``optimizer_in_backward`` the optimizer-in-backward
                wrapper (only read for the lr).
            save_checkpoint (Callable[..., None]): ``save_checkpoint(epoch, samples_consumed=,
                intermediate=)``; ``samples_consumed`` counts samples of the epoch over all ranks.
            optimizer_in_backward (bool): the optimizer steps inside backward (hooks), so each
                micro-batch's loss is normalised by its own tokens before backward and no optimizer
                step follows. Default False.
            loss_step (Optional[Callable[..., Tuple[torch.Tensor, torch.Tensor]]]): the micro-batch
                objective for recipes other than SFT (distillation, preference losses):
                ``loss_step(model, loss_fn, batch, activations_ctx=)`` returns the summed loss and
                the count it is normalised by (trained tokens, or pairs). Default None:
                ``sft_loss_step``; validation uses the same function.
            step_metrics (Optional[Callable[[], Dict[str, float]]]): called on every rank after each
                optimizer step; its metrics are logged with the step's (e.g. the preference recipes'
                rewards). Default None.
        """
        state = self.state
        activations_ctx = get_act_offloading_ctx_manager(model, self.enable_activation_offloading)
        if loss_step is None:
            padding_free = self.padding_free and supports_padding_free(model)
            if padding_free:
                log.info("Padding-free batches: each micro-batch trains on its real tokens only, laid end to end "
                         "(same loss and gradients as the padded batch; padding_free=False turns this off)")
            loss_step = partial(sft_loss_step, padding_free=padding_free)
        loss_step = partial(loss_step, model, loss_fn, activations_ctx=activations_ctx)
        check_vocab_fits(getattr(self.data, "tokenizer", None), model)
        cleanup_before_training()
        model.train()
        self.profiler.start()
        with StopSignals() as stop:
            for epoch in range(state.epochs_run, state.total_epochs):
                self.data.sampler.set_epoch(epoch)
                self.metrics.start_epoch(epoch, self.steps_per_epoch, state.steps_into_epoch)
                batches = iter(self.data.dataloader)
                while state.steps_into_epoch < self.steps_per_epoch:
                    window_start = self.accumulator.micro_steps == 0
                    if window_start:
                        rng_state = torch.get_rng_state()  # what a save before this step records
                    batch, error = _next_batch(batches)
                    # Every rank learns whether any was signalled or failed, so all stop at the same step.
                    signalled, failed = agree_on_stop(stop.signum is not None, error is not None, self.device)
                    if failed:
                        self._stop_on_data_error(epoch, error, rng_state, save_checkpoint)
                    if signalled and window_start:
                        self._stop_on_signal(stop.signum, epoch, save_checkpoint, rng_state)
                    if batch is None:
                        break
                    loss, num_tokens = loss_step({k: v.to(self.device, non_blocking=True) for k, v in batch.items()})
                    if optimizer_in_backward:
                        (loss / num_tokens.clamp(min=1)).backward()  # the optimizer steps inside backward
                    else:
                        loss.backward()
                    if not self.accumulator.micro_step(loss.detach(), num_tokens):
                        continue
                    # One optimizer step: normalise gradients by the tokens of the whole window.
                    params = [] if optimizer_in_backward else model.parameters()
                    loss_value, window_tokens = self.accumulator.finish(params)
                    check_loss_finite(loss_value, state.global_step + 1)
                    grad_norm = None if optimizer_in_backward else optimizer_step(optimizer, model, self.clip_grad_norm)
                    if self.lr_scheduler is not None:
                        self.lr_scheduler.step()
                    state.global_step += 1
                    state.steps_into_epoch += 1
                    self.profiler.step()
                    extra = step_metrics() if step_metrics is not None else None
                    self.metrics.step(state.global_step, loss_value, window_tokens, optimizer, grad_norm, extra)
                    self._validate_if_due(model, loss_step)
                    if should_save_mid_epoch(state, self.steps_per_epoch, self.save_every_n_steps):
                        consumed = state.steps_into_epoch * self.samples_per_step
                        self._save(save_checkpoint, epoch, samples_consumed=consumed, intermediate=True)
                self.metrics.end_epoch()
                state.epochs_run += 1
                state.steps_into_epoch = 0
                more = state.epochs_run < state.total_epochs
                self._save(save_checkpoint, epoch, samples_consumed=0, intermediate=more)
                if state.epochs_run < state.total_epochs and agree_on_stop(stop.signum is not None, False,
                                                                             self.device)[0]:
                    self._stop_on_signal(stop.signum, epoch + 1, save_checkpoint)
        self.profiler.stop()

    def _save(self, save_checkpoint: Callable[..., None], epoch: int, *, samples_consumed: int,
              intermediate: bool) -> None:
        # Every rank calls this: the ranks' generator states are gathered (a collective) for ``save``
        # on rank 0, so that each rank of a resumed run draws the dropout masks it would have drawn.
        self._rank_rng_states = gather_rng_states(self.device) if intermediate else None
        save_checkpoint(epoch, samples_consumed=samples_consumed, intermediate=intermediate)
        self._rank_rng_states = None
        self._saved_at_step = self.state.global_step

    def _checkpoint_folder(self, epoch: int) -> str:
        """The folder the latest save of this run wrote (``step_N`` mid-epoch, else ``epoch_N``)."""
        state = self.state
        name = f"step_{state.global_step}" if state.steps_into_epoch > 0 else f"epoch_{epoch - 1}"
        return name if self.output_dir is None else str(Path(self.output_dir) / name)

    def _save_progress(self, epoch: int, save_checkpoint: Callable[..., None]) -> Optional[str]:
        """Save the state after the last finished step (unless a save already holds it); its folder."""
        state = self.state
        if state.global_step == 0:
            return None
        if self._saved_at_step != state.global_step and state.steps_into_epoch > 0:
            self._save(save_checkpoint, epoch, samples_consumed=state.steps_into_epoch * self.samples_per_step,
                       intermediate=True)
        return self._checkpoint_folder(epoch)

    def _stop_on_signal(self, signum: Optional[int], epoch: int, save_checkpoint: Callable[..., None],
                        rng_state: Optional[torch.Tensor] = None) -> None:
        # signum is None on a rank that was not signalled itself but agreed to stop with the others.
        signum = signum if signum is not None else signal.SIGTERM
        self.metrics.end_epoch()
        if rng_state is not None:  # the batch just drawn is not trained: save the generator as before it
            torch.set_rng_state(rng_state)
        folder = self._save_progress(epoch, save_checkpoint)
        report_stop(signal.Signals(signum).name, folder)
        raise TrainingStopped(signum, folder)

    def _stop_on_data_error(self, epoch: int, error: Optional[BaseException], rng_state: torch.Tensor,
                            save_checkpoint: Callable[..., None]) -> None:
        # Reading a batch does not depend on the model: the state after the last finished step
        # is sound, so it is saved (with the generator as it was then) and the run can resume
        # once the data is fixed.
        self.metrics.end_epoch()
        torch.set_rng_state(rng_state)
        folder = self._save_progress(epoch, save_checkpoint)
        report_stop("a data error" if error is not None else "a data error on another rank", folder)
        if error is not None:
            raise error
        raise DataError("another rank failed to read its batch (its error is printed above)")

    def _validate_if_due(self, model: torch.nn.Module, loss_step: LossStep) -> None:
        if self.data.val_dataloader is None or not every_n_steps(self.state.global_step, self.run_val_every_n_steps):
            return
        val_loss = validation_loss(model, self.data.val_dataloader, loss_step, self.device)
        self.metrics.log("val_loss", val_loss, step=self.state.global_step)
