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
import time
from functools import partial
from typing import Any, Dict, Optional, Tuple

import torch
import torch.distributed as dist
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy
from torch.distributed.tensor import DTensor
from torch.utils.data import ConcatDataset, DataLoader
from tqdm import tqdm

from torchtune import config, modules, training, utils
from torchtune.data import padded_collate_packed, padded_collate_sft
from torchtune.modules.loss import CEWithChunkedOutputLoss, SFTLoss
from torchtune.modules.peft import (
    get_adapter_params,
    get_adapter_state_dict,
    get_lora_module_names,
    get_merged_lora_ckpt,
    set_trainable_params,
    validate_missing_and_unexpected_for_lora,
)

log = utils.get_logger("INFO")

# Checkpoint entries that stay on rank 0 until they are sharded; the rest goes to every rank.
_SHARDED_KEYS = (training.MODEL_KEY, training.ADAPTER_KEY, training.OPT_KEY)


class LoRAFinetuneRecipeDistributed:
    """LoRA / QLoRA / DoRA fine-tuning of a decoder on several ranks, sharded with FSDP2.

    Call inside an initialised process group (``recipe_main`` does it).

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/llama2/7B_lora.yaml``).
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._world_size, self._rank = training.get_world_size_and_rank()
        self._is_rank_zero = self._rank == 0
        self._output_dir = cfg.output_dir
        self._log_every_n_steps = cfg.get("log_every_n_steps", 1)
        self._log_peak_memory_stats = cfg.get("log_peak_memory_stats", False)
        self._resume_from_checkpoint = cfg.get("resume_from_checkpoint", False)
        self._save_adapter_weights_only = cfg.get("save_adapter_weights_only", False)
        self._gradient_accumulation_steps = cfg.get("gradient_accumulation_steps", 1)
        self._clip_grad_norm = cfg.get("clip_grad_norm", None)
        self._save_every_n_steps = cfg.get("save_every_n_steps", None)
        self._keep_last_n_checkpoints = cfg.get("keep_last_n_checkpoints", None)
        self._run_val_every_n_steps = cfg.get("run_val_every_n_steps", None)
        self._fsdp_cpu_offload = cfg.get("fsdp_cpu_offload", False)
        self.seed = training.set_seed(seed=cfg.get("seed", None))
        self.epochs_run = 0
        self.total_epochs = cfg.epochs
        self.max_steps_per_epoch = cfg.get("max_steps_per_epoch", None)
        self.global_step = 0
        self._steps_into_epoch = 0

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build every component from the config, restoring state when resuming."""
        self._metric_logger = None
        if self._is_rank_zero:
            self._metric_logger = config.instantiate(cfg.metric_logger)
            self._metric_logger.log_config(cfg)
        checkpoint = self._load_checkpoint(cfg.checkpointer)
        self._loss_fn = config.instantiate(cfg.loss)  # before the model: it decides how `output` is sharded

        resume_adapter = self._resume_from_checkpoint and training.ADAPTER_KEY in checkpoint["_keys"]
        self._model = self._setup_model(
            cfg,
            base_state_dict=checkpoint.get(training.MODEL_KEY, {}),
            adapter_state_dict=checkpoint.get(training.ADAPTER_KEY, {}) if resume_adapter else None,
        )
        self._tokenizer = config.instantiate(cfg.tokenizer)

        trainable = [p for p in self._model.parameters() if p.requires_grad]
        self._optimizer = config.instantiate(cfg.optimizer, trainable)
        if self._resume_from_checkpoint:
            training.load_from_full_optimizer_state(
                self._model, self._optimizer, checkpoint.get(training.OPT_KEY, {}), self._device
            )

        if cfg.get("compile", False):
            self._loss_fn = training.compile_loss(self._loss_fn)
        if isinstance(self._loss_fn, SFTLoss):
            self._loss_fn.set_model_output(self._model)  # the loss applies the output projection
        elif isinstance(self._loss_fn, CEWithChunkedOutputLoss):
            self._model.set_num_output_chunks(self._loss_fn.num_output_chunks)

        self._sampler, self._dataloader = self._setup_data(cfg.dataset, cfg.shuffle, cfg.batch_size)
        if self._resume_from_checkpoint:
            # Saved positions count samples over all ranks, so any world size resumes them.
            state = dict(checkpoint[training.DATALOADER_KEY])
            state["samples_consumed"] //= self._world_size
            self._sampler.load_state_dict(state)
        self._val_dataloader = None
        if cfg.get("dataset_val") is not None:
            _, self._val_dataloader = self._setup_data(cfg.dataset_val, False, cfg.batch_size)

        self._steps_per_epoch = len(self._dataloader) // self._gradient_accumulation_steps
        if self.max_steps_per_epoch is not None:
            self._steps_per_epoch = min(self._steps_per_epoch, self.max_steps_per_epoch)
        if self._steps_per_epoch == 0:
            raise ValueError(
                f"Each of the {self._world_size} ranks gets {len(self._dataloader)} batches of "
                f"batch_size={cfg.batch_size}, fewer than gradient_accumulation_steps="
                f"{self._gradient_accumulation_steps}: no optimizer step would run"
            )
        self._lr_scheduler = config.instantiate(
            cfg.lr_scheduler,
            self._optimizer,
            num_training_steps=self.total_epochs * self._steps_per_epoch,
            last_epoch=self.global_step - 1,
        )
        if self._resume_from_checkpoint and training.LR_SCHEDULER_KEY in checkpoint:
            self._lr_scheduler.load_state_dict(checkpoint[training.LR_SCHEDULER_KEY])
        self._profiler = self._setup_profiler(cfg.get("profiler", None))
        if self._resume_from_checkpoint:
            torch.set_rng_state(checkpoint[training.RNG_KEY])

    def _load_checkpoint(self, cfg_checkpointer: DictConfig) -> Dict[str, Any]:
        """Rank 0 reads the checkpoint; every rank gets the recipe progress, only rank 0 the weights."""
        self._checkpointer = None
        checkpoint: Dict[str, Any] = {}
        if self._is_rank_zero:
            self._checkpointer = config.instantiate(
                cfg_checkpointer, resume_from_checkpoint=self._resume_from_checkpoint
            )
            checkpoint = self._checkpointer.load_checkpoint()
        progress = {k: v for k, v in checkpoint.items() if k not in _SHARDED_KEYS}
        progress["_keys"] = list(checkpoint)
        progress = training.broadcast_object(progress if self._is_rank_zero else None, device=self._object_device)
        if self._resume_from_checkpoint:
            self._restore_progress(progress)
        return {**progress, **checkpoint}

    @property
    def _object_device(self) -> Optional[torch.device]:
        return None if self._device.type == "cpu" else self._device

    def _setup_profiler(self, cfg_profiler: Optional[DictConfig]):
        if cfg_profiler is None:
            return training.DummyProfiler()
        if "_component_" not in cfg_profiler:
            cfg_profiler = OmegaConf.merge({"_component_": "torchtune.training.setup_torch_profiler"}, cfg_profiler)
        profiler, _ = config.instantiate(cfg_profiler)
        return profiler

    def _restore_progress(self, ckpt: Dict[str, Any]) -> None:
        missing = [k for k in (training.SEED_KEY, training.EPOCHS_KEY, training.TOTAL_EPOCHS_KEY,
                               training.STEPS_KEY, training.OPT_KEY, training.DATALOADER_KEY) if k not in ckpt["_keys"]]
        if missing:
            raise KeyError(
                f"resume_from_checkpoint=True but the recipe state lacks {missing}; "
                "point checkpointer.recipe_checkpoint at a recipe_state.pt written by an intermediate save"
            )
        if self.seed != ckpt[training.SEED_KEY]:
            if self._is_rank_zero:
                log.warning(f"Config seed {self.seed} differs from the checkpoint's; using {ckpt[training.SEED_KEY]}")
            self.seed = training.set_seed(seed=ckpt[training.SEED_KEY])
        self.epochs_run = ckpt[training.EPOCHS_KEY]
        self.global_step = ckpt[training.STEPS_KEY]
        self._steps_into_epoch = ckpt[training.DATALOADER_KEY]["samples_consumed"] // max(
            1, ckpt.get("samples_per_step", 1)
        )

    def _setup_model(
        self,
        cfg: DictConfig,
        *,
        base_state_dict: Dict[str, torch.Tensor],
        adapter_state_dict: Optional[Dict[str, torch.Tensor]],
    ) -> torch.nn.Module:
        cfg_model = cfg.model
        with training.set_default_dtype(self._dtype), torch.device("meta"):
            model = config.instantiate(cfg_model)
        self._lora_rank = cfg_model.lora_rank
        self._lora_alpha = cfg_model.lora_alpha
        self._lora_attn_modules = list(cfg_model.lora_attn_modules)
        self._apply_lora_to_mlp = cfg_model.get("apply_lora_to_mlp", False)
        self._apply_lora_to_output = cfg_model.get("apply_lora_to_output", False)
        self._use_dora = cfg_model.get("use_dora", False)

        # Every rank draws the same initial adapters, so the generators stay in step.
        fresh_adapters = training.get_initial_adapter_state_dict(model) if adapter_state_dict is None else None
        set_trainable_params(model, get_adapter_params(model))  # before sharding: FSDP keeps requires_grad
        if cfg.get("enable_activation_checkpointing", False):
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        if cfg.get("compile", False):
            training.compile_model(model)
        self._shard(cfg, model)

        load = partial(training.load_from_full_model_state_dict, model, device=self._device,
                       cpu_offload=self._fsdp_cpu_offload)
        base_missing, base_unexpected = load(base_state_dict)
        if adapter_state_dict is not None:
            lora_missing, lora_unexpected = load(adapter_state_dict)
        else:
            load(fresh_adapters)
            # DoRA magnitudes start from the loaded base weights' row norms (computed on the shards).
            for m in model.modules():
                if hasattr(m, "initialize_dora_magnitude"):
                    m.initialize_dora_magnitude()
            lora_missing, lora_unexpected = None, None
        validate_missing_and_unexpected_for_lora(
            lora_attn_modules=self._lora_attn_modules,
            apply_lora_to_mlp=self._apply_lora_to_mlp,
            apply_lora_to_output=self._apply_lora_to_output,
            base_missing=base_missing,
            base_unexpected=base_unexpected,
            lora_missing=lora_missing,
            lora_unexpected=lora_unexpected,
        )
        self._init_buffers(model)
        self._activations_handling_ctx = training.get_act_offloading_ctx_manager(
            model, cfg.get("enable_activation_offloading", False)
        )
        if self._is_rank_zero:
            n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            n_total = sum(p.numel() for p in model.parameters())
            log.info(f"Model sharded over {self._world_size} rank(s) on {self._device.type} in {self._dtype}: "
                     f"{n_trainable:,} of {n_total:,} parameters trainable")
            if self._log_peak_memory_stats:
                training.log_memory_stats(training.get_memory_stats(device=self._device))
        return model

    def _shard(self, cfg: DictConfig, model: torch.nn.Module) -> None:
        """FSDP2 over all ranks: one unit per transformer layer (plus ``custom_sharded_layers``)."""
        mesh = init_device_mesh(self._device.type, (self._world_size,), mesh_dim_names=("dp",))
        param_dtype, reduce_dtype = cfg.get("fsdp_param_dtype", None), cfg.get("fsdp_reduce_dtype", None)
        mp_policy = MixedPrecisionPolicy(
            param_dtype=training.get_dtype(param_dtype, self._device) if param_dtype else None,
            reduce_dtype=training.get_dtype(reduce_dtype, self._device) if reduce_dtype else None,
        )
        names = list(cfg.get("custom_sharded_layers", None) or [])
        if isinstance(self._loss_fn, SFTLoss) and "output" not in names:
            # Such a loss calls `model.output` itself, after the model's forward: as its own unit
            # the projection is gathered around each of those calls.
            names.append("output")
        training.shard_model(
            model,
            [partial(training.get_shard_conditions, names_to_match=names)],
            cpu_offload=self._fsdp_cpu_offload,
            reshard_after_forward=cfg.get("fsdp_reshard_after_forward", True),
            dp_mesh=mesh,
            mp_policy=mp_policy,
        )

    def _init_buffers(self, model: torch.nn.Module) -> None:
        """Compute the non-persistent buffers (RoPE tables) that meta-device construction skipped."""
        with training.set_default_dtype(self._dtype), self._device:
            for m in model.modules():
                if hasattr(m, "rope_init"):
                    m.rope_init()
        training.validate_no_params_on_meta_device(model)

    def _setup_data(self, cfg_dataset, shuffle: bool, batch_size: int):
        if isinstance(cfg_dataset, ListConfig):
            dataset = ConcatDataset([config.instantiate(c, self._tokenizer) for c in cfg_dataset])
            packed = any(c.get("packed", False) for c in cfg_dataset)
        else:
            dataset = config.instantiate(cfg_dataset, self._tokenizer)
            packed = cfg_dataset.get("packed", False)
        sampler = training.StatefulDistributedSampler(
            dataset, num_replicas=self._world_size, rank=self._rank, shuffle=shuffle, seed=self.seed
        )
        collate = (
            padded_collate_packed
            if packed
            else partial(padded_collate_sft, padding_idx=self._tokenizer.pad_id, ignore_idx=self._loss_fn.ignore_index)
        )
        dataloader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, drop_last=True)
        return sampler, dataloader

    # -------------------------------------------------------------- training
    def _loss_step(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Summed token cross-entropy of one micro-batch on this rank and its number of trained tokens.

        Labels are shifted here for next-token prediction.
        """
        labels = training.shift_labels(batch.pop("labels"), self._loss_fn.ignore_index)
        num_tokens = training.count_trained_tokens(labels, self._loss_fn.ignore_index)
        with self._activations_handling_ctx:
            logits = self._model(**batch)
        return self._loss_fn(logits, labels, reduction="sum"), num_tokens

    @torch.no_grad()
    def validate(self) -> float:
        """Mean token cross-entropy over the validation set (every rank's slice)."""
        self._model.eval()
        totals = torch.zeros(2, device=self._device)  # [summed loss, trained tokens]
        for batch in self._val_dataloader:
            loss, num_tokens = self._loss_step({k: v.to(self._device) for k, v in batch.items()})
            totals += torch.stack([loss.float(), num_tokens.float()])
        dist.all_reduce(totals)
        self._model.train()
        return (totals[0] / totals[1].clamp(min=1)).item()

    def _clip_gradients(self) -> Optional[torch.Tensor]:
        if self._clip_grad_norm is None:
            return None
        grad_norm = torch.nn.utils.clip_grad_norm_(self._model.parameters(), float(self._clip_grad_norm))
        return grad_norm.full_tensor() if isinstance(grad_norm, DTensor) else grad_norm

    def train(self) -> None:
        """Run the training loop until ``epochs`` are done."""
        training.cleanup_before_training()
        self._model.train()
        accumulator = training.GradientAccumulator(self._gradient_accumulation_steps)
        samples_per_step = self._gradient_accumulation_steps * self._dataloader.batch_size * self._world_size
        self._profiler.start()
        for epoch in range(self.epochs_run, self.total_epochs):
            self._sampler.set_epoch(epoch)
            pbar = tqdm(total=self._steps_per_epoch, initial=self._steps_into_epoch, desc=f"epoch {epoch + 1}",
                        dynamic_ncols=True, disable=not self._is_rank_zero)
            t0 = time.perf_counter()
            for batch in self._dataloader:
                if self._steps_into_epoch >= self._steps_per_epoch:
                    break
                batch = {k: v.to(self._device, non_blocking=True) for k, v in batch.items()}
                loss, num_tokens = self._loss_step(batch)
                loss.backward()
                if not accumulator.micro_step(loss.detach(), num_tokens):
                    continue

                # One optimizer step: normalise gradients by the tokens of the window on all ranks.
                loss_value, window_tokens = accumulator.finish(self._model.parameters())
                training.check_loss_finite(loss_value, self.global_step + 1)
                grad_norm = self._clip_gradients()
                self._optimizer.step()
                self._optimizer.zero_grad(set_to_none=True)
                self._lr_scheduler.step()
                self.global_step += 1
                self._steps_into_epoch += 1
                self._profiler.step()

                elapsed = time.perf_counter() - t0
                t0 = time.perf_counter()
                self._log_step(pbar, loss_value, window_tokens / elapsed / self._world_size, grad_norm)
                if self._run_val_every_n_steps and self._val_dataloader is not None \
                        and self.global_step % self._run_val_every_n_steps == 0:
                    val_loss = self.validate()
                    if self._is_rank_zero:
                        self._metric_logger.log("val_loss", val_loss, step=self.global_step)
                if self._save_every_n_steps and self.global_step % self._save_every_n_steps == 0 \
                        and self._steps_into_epoch < self._steps_per_epoch:
                    self.save_checkpoint(epoch, samples_consumed=self._steps_into_epoch * samples_per_step,
                                         intermediate=True)
            pbar.close()
            self.epochs_run += 1
            self._steps_into_epoch = 0
            self.save_checkpoint(epoch, samples_consumed=0, intermediate=self.epochs_run < self.total_epochs)
        self._profiler.stop()

    def _log_step(self, pbar: tqdm, loss_value: float, tokens_per_second: float,
                  grad_norm: Optional[torch.Tensor]) -> None:
        if not self._is_rank_zero:
            return
        lr = training.get_lr(self._optimizer)
        pbar.update(1)
        pbar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_second:.0f}")
        if self.global_step % self._log_every_n_steps == 0:
            metrics = {"loss": loss_value, "lr": lr, "tokens_per_second_per_gpu": tokens_per_second}
            if grad_norm is not None:
                metrics["grad_norm"] = float(grad_norm)
            if self._log_peak_memory_stats:
                metrics.update(training.get_memory_stats(device=self._device))
            self._metric_logger.log_dict(metrics, step=self.global_step)

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Gather to rank 0 and save adapter + merged weights; with ``intermediate`` also the state to resume.

        Every rank must call it. ``samples_consumed`` counts the samples of the epoch over all ranks.
        """
        gather_device = self._device if self._fsdp_cpu_offload else None
        model_sd = training.gather_cpu_state_dict(
            self._model, self._is_rank_zero, device=gather_device, adapter_weights_only=self._save_adapter_weights_only
        )
        opt_sd = None
        if intermediate:
            opt_sd = training.get_full_optimizer_state_dict(
                self._model, self._optimizer, self._is_rank_zero, device=gather_device
            )
        if not self._is_rank_zero:
            return
        state: Dict[str, Any] = {training.ADAPTER_KEY: get_adapter_state_dict(model_sd)}
        state[training.ADAPTER_CONFIG] = {
            "r": self._lora_rank,
            "lora_alpha": self._lora_alpha,
            "target_modules": get_lora_module_names(
                self._lora_attn_modules, self._apply_lora_to_mlp, self._apply_lora_to_output
            ),
            "peft_type": "LORA",
            "use_dora": self._use_dora,
        }
        if not self._save_adapter_weights_only:
            state[training.MODEL_KEY] = get_merged_lora_ckpt(model_sd, rank=self._lora_rank, alpha=self._lora_alpha)
        if intermediate:
            state.update({
                training.OPT_KEY: opt_sd,
                training.LR_SCHEDULER_KEY: self._lr_scheduler.state_dict(),
                training.SEED_KEY: self.seed,
                training.EPOCHS_KEY: self.epochs_run,
                training.TOTAL_EPOCHS_KEY: self.total_epochs,
                training.MAX_STEPS_KEY: self.max_steps_per_epoch,
                training.STEPS_KEY: self.global_step,
                training.DATALOADER_KEY: self._sampler.state_dict(samples_consumed),
                training.RNG_KEY: torch.get_rng_state(),
                "samples_per_step": self._gradient_accumulation_steps * self._dataloader.batch_size * self._world_size,
            })
        self._checkpointer.save_checkpoint(
            state, epoch=epoch, intermediate_checkpoint=intermediate, adapter_only=self._save_adapter_weights_only,
            step=self.global_step if samples_consumed > 0 else None, keep_last_n_checkpoints=self._keep_last_n_checkpoints,
        )

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
