"""LoRA, QLoRA and DoRA fine-tuning on a single device.

    tune run lora_finetune_single_device --config llama2/7B_lora_single_device

The algorithm, top to bottom:
1. load the base checkpoint, build the model with adapters, freeze everything but the adapters;
2. for each optimizer step, run ``gradient_accumulation_steps`` micro-batches, summing the
   token-level cross-entropy, and divide the gradients by the number of trained tokens of the
   whole window (so 2 micro-batches of 2 equal one batch of 4);
3. clip, step the optimizer and the LR schedule, log loss / lr / tokens per second / memory;
4. save the adapter (torchtune and PEFT formats) and the merged weights in HF layout, every
   epoch and, on request, every ``save_every_n_steps`` steps with the state needed to resume
   mid-epoch.
"""

import sys
import time
from functools import partial
from typing import Any, Dict, Optional, Tuple

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
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


class LoRAFinetuneRecipeSingleDevice:
    """LoRA / QLoRA / DoRA fine-tuning of a decoder on one device (CPU, CUDA or MPS).

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/llama2/7B_lora_single_device.yaml``).
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
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
        self.seed = training.set_seed(seed=cfg.get("seed", None))
        self.epochs_run = 0
        self.total_epochs = cfg.epochs
        self.max_steps_per_epoch = cfg.get("max_steps_per_epoch", None)
        self.global_step = 0
        self._steps_into_epoch = 0

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build every component from the config, restoring state when resuming."""
        self._metric_logger = config.instantiate(cfg.metric_logger)
        self._metric_logger.log_config(cfg)

        self._checkpointer = config.instantiate(
            cfg.checkpointer, resume_from_checkpoint=self._resume_from_checkpoint
        )
        checkpoint = self._checkpointer.load_checkpoint()
        if self._resume_from_checkpoint:
            self._restore_progress(checkpoint)

        self._model = self._setup_model(
            cfg.model,
            enable_activation_checkpointing=cfg.get("enable_activation_checkpointing", False),
            enable_activation_offloading=cfg.get("enable_activation_offloading", False),
            compile_model=cfg.get("compile", False),
            base_state_dict=checkpoint[training.MODEL_KEY],
            adapter_state_dict=checkpoint.get(training.ADAPTER_KEY) if self._resume_from_checkpoint else None,
        )
        self._tokenizer = config.instantiate(cfg.tokenizer)

        trainable = [p for p in self._model.parameters() if p.requires_grad]
        self._optimizer = config.instantiate(cfg.optimizer, trainable)
        if self._resume_from_checkpoint:
            self._optimizer.load_state_dict(checkpoint[training.OPT_KEY])

        self._loss_fn = config.instantiate(cfg.loss)
        if cfg.get("compile", False):
            self._loss_fn = training.compile_loss(self._loss_fn)
        if isinstance(self._loss_fn, SFTLoss):
            self._loss_fn.set_model_output(self._model)  # the loss applies the output projection
        elif isinstance(self._loss_fn, CEWithChunkedOutputLoss):
            self._model.set_num_output_chunks(self._loss_fn.num_output_chunks)

        self._sampler, self._dataloader = self._setup_data(
            cfg.dataset, cfg.shuffle, cfg.batch_size, group_by_length=cfg.get("group_by_length", False)
        )
        if self._resume_from_checkpoint:
            self._sampler.load_state_dict(checkpoint[training.DATALOADER_KEY])
        self._val_dataloader = None
        if cfg.get("dataset_val") is not None:
            _, self._val_dataloader = self._setup_data(cfg.dataset_val, False, cfg.batch_size)

        self._steps_per_epoch = len(self._dataloader) // self._gradient_accumulation_steps
        if self.max_steps_per_epoch is not None:
            self._steps_per_epoch = min(self._steps_per_epoch, self.max_steps_per_epoch)
        if self._steps_per_epoch == 0:
            raise ValueError(
                f"The dataset gives {len(self._dataloader)} batches of batch_size={cfg.batch_size}, fewer than "
                f"gradient_accumulation_steps={self._gradient_accumulation_steps}: no optimizer step would run"
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

    def _setup_profiler(self, cfg_profiler: Optional[DictConfig]):
        if cfg_profiler is None:
            return training.DummyProfiler()
        if "_component_" not in cfg_profiler:
            cfg_profiler = OmegaConf.merge({"_component_": "torchtune.training.setup_torch_profiler"}, cfg_profiler)
        profiler, _ = config.instantiate(cfg_profiler)
        return profiler

    def _restore_progress(self, ckpt: Dict[str, Any]) -> None:
        missing = [k for k in (training.SEED_KEY, training.EPOCHS_KEY, training.TOTAL_EPOCHS_KEY,
                               training.STEPS_KEY, training.OPT_KEY, training.DATALOADER_KEY) if k not in ckpt]
        if missing:
            raise KeyError(
                f"resume_from_checkpoint=True but the recipe state lacks {missing}; "
                "point checkpointer.recipe_checkpoint at a recipe_state.pt written by an intermediate save"
            )
        if self.seed != ckpt[training.SEED_KEY]:
            log.warning(f"Config seed {self.seed} differs from the checkpoint's; using {ckpt[training.SEED_KEY]}")
            self.seed = training.set_seed(seed=ckpt[training.SEED_KEY])
        self.epochs_run = ckpt[training.EPOCHS_KEY]
        self.global_step = ckpt[training.STEPS_KEY]
        self._steps_into_epoch = ckpt[training.DATALOADER_KEY]["samples_consumed"] // max(
            1, ckpt.get("samples_per_step", 1)
        )

    def _setup_model(
        self,
        cfg_model: DictConfig,
        *,
        enable_activation_checkpointing: bool,
        enable_activation_offloading: bool,
        compile_model: bool,
        base_state_dict: Dict[str, torch.Tensor],
        adapter_state_dict: Optional[Dict[str, torch.Tensor]],
    ) -> torch.nn.Module:
        # The random init of the base weights (overwritten below) must not consume the global
        # generator: fresh adapters then get exactly the numbers the distributed recipe draws.
        with torch.random.fork_rng(devices=[]):
            with training.set_default_dtype(self._dtype), self._device:
                model = config.instantiate(cfg_model)
        fresh_adapters = training.get_initial_adapter_state_dict(model) if adapter_state_dict is None else None
        self._lora_rank = cfg_model.lora_rank
        self._lora_alpha = cfg_model.lora_alpha
        self._lora_attn_modules = list(cfg_model.lora_attn_modules)
        self._apply_lora_to_mlp = cfg_model.get("apply_lora_to_mlp", False)
        self._apply_lora_to_output = cfg_model.get("apply_lora_to_output", False)
        self._use_dora = cfg_model.get("use_dora", False)

        if enable_activation_checkpointing:
            training.set_activation_checkpointing(model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})

        base_missing, base_unexpected = model.load_state_dict(base_state_dict, strict=False)
        if adapter_state_dict is not None:
            lora_missing, lora_unexpected = model.load_state_dict(adapter_state_dict, strict=False)
        else:
            model.load_state_dict(fresh_adapters, strict=False)
            # DoRA magnitudes start from the loaded base weights' row norms.
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
        set_trainable_params(model, get_adapter_params(model))
        self._activations_handling_ctx = training.get_act_offloading_ctx_manager(model, enable_activation_offloading)
        if compile_model:
            training.compile_model(model)
        n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_total = sum(p.numel() for p in model.parameters())
        log.info(f"Model on {self._device} in {self._dtype}: {n_trainable:,} of {n_total:,} parameters trainable")
        if self._log_peak_memory_stats:
            training.log_memory_stats(training.get_memory_stats(device=self._device))
        return model

    def _setup_data(self, cfg_dataset, shuffle: bool, batch_size: int, group_by_length: bool = False):
        if isinstance(cfg_dataset, ListConfig):
            datasets = [config.instantiate(c, self._tokenizer) for c in cfg_dataset]
            dataset = ConcatDataset(datasets)
            packed = any(c.get("packed", False) for c in cfg_dataset)
        else:
            dataset = config.instantiate(cfg_dataset, self._tokenizer)
            packed = cfg_dataset.get("packed", False)
        if group_by_length:
            if packed:
                raise ValueError("group_by_length=True needs unpacked samples: packs all have the same length; "
                                 "set dataset.packed=False or group_by_length=False")
            # One pass over the data for the lengths; batches then pad far less (see LengthGroupedSampler).
            t0 = time.perf_counter()
            lengths = [len(dataset[i]["tokens"]) for i in range(len(dataset))]
            log.info(f"group_by_length: measured {len(lengths)} samples in {time.perf_counter() - t0:.1f} s")
            sampler = training.LengthGroupedSampler(dataset, lengths, batch_size, num_replicas=1, rank=0,
                                                    shuffle=shuffle, seed=self.seed)
        else:
            sampler = training.StatefulDistributedSampler(dataset, num_replicas=1, rank=0, shuffle=shuffle,
                                                          seed=self.seed)
        collate = (
            padded_collate_packed
            if packed
            else partial(padded_collate_sft, padding_idx=self._tokenizer.pad_id, ignore_idx=self._loss_fn.ignore_index)
        )
        dataloader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, drop_last=True)
        return sampler, dataloader

    # -------------------------------------------------------------- training
    def _loss_step(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Summed token cross-entropy of one micro-batch and its number of trained tokens.

        Labels are shifted here for next-token prediction.
        """
        labels = training.shift_labels(batch.pop("labels"), self._loss_fn.ignore_index)
        num_tokens = training.count_trained_tokens(labels, self._loss_fn.ignore_index)
        with self._activations_handling_ctx:
            logits = self._model(**batch)
        return self._loss_fn(logits, labels, reduction="sum"), num_tokens

    @torch.no_grad()
    def validate(self) -> float:
        """Mean token cross-entropy over the validation set."""
        self._model.eval()
        total, tokens = torch.zeros((), device=self._device), torch.zeros((), device=self._device)
        for batch in self._val_dataloader:
            loss, num_tokens = self._loss_step({k: v.to(self._device) for k, v in batch.items()})
            total += loss
            tokens += num_tokens
        self._model.train()
        return (total / tokens.clamp(min=1)).item()

    def train(self) -> None:
        """Run the training loop until ``epochs`` are done."""
        training.cleanup_before_training()
        self._model.train()
        accumulator = training.GradientAccumulator(self._gradient_accumulation_steps)
        samples_per_step = self._gradient_accumulation_steps * self._dataloader.batch_size
        self._profiler.start()
        for epoch in range(self.epochs_run, self.total_epochs):
            self._sampler.set_epoch(epoch)
            pbar = tqdm(total=self._steps_per_epoch, initial=self._steps_into_epoch, desc=f"epoch {epoch + 1}",
                        dynamic_ncols=True)
            t0 = time.perf_counter()
            for batch in self._dataloader:
                if self._steps_into_epoch >= self._steps_per_epoch:
                    break
                batch = {k: v.to(self._device, non_blocking=True) for k, v in batch.items()}
                loss, num_tokens = self._loss_step(batch)
                loss.backward()
                if not accumulator.micro_step(loss.detach(), num_tokens):
                    continue

                # One optimizer step: normalise gradients by the tokens of the whole window.
                loss_value, window_tokens = accumulator.finish(self._model.parameters())
                training.check_loss_finite(loss_value, self.global_step + 1)
                grad_norm = None
                if self._clip_grad_norm is not None:
                    grad_norm = torch.nn.utils.clip_grad_norm_(self._model.parameters(), float(self._clip_grad_norm))
                self._optimizer.step()
                self._optimizer.zero_grad(set_to_none=True)
                self._lr_scheduler.step()
                self.global_step += 1
                self._steps_into_epoch += 1
                self._profiler.step()

                elapsed = time.perf_counter() - t0
                t0 = time.perf_counter()
                lr = training.get_lr(self._optimizer)
                pbar.update(1)
                pbar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{window_tokens / elapsed:.0f}")
                if self.global_step % self._log_every_n_steps == 0:
                    metrics = {"loss": loss_value, "lr": lr, "tokens_per_second_per_gpu": window_tokens / elapsed}
                    if grad_norm is not None:
                        metrics["grad_norm"] = float(grad_norm)
                    if self._log_peak_memory_stats:
                        metrics.update(training.get_memory_stats(device=self._device))
                    self._metric_logger.log_dict(metrics, step=self.global_step)
                if self._run_val_every_n_steps and self._val_dataloader is not None \
                        and self.global_step % self._run_val_every_n_steps == 0:
                    self._metric_logger.log("val_loss", self.validate(), step=self.global_step)
                if self._save_every_n_steps and self.global_step % self._save_every_n_steps == 0 \
                        and self._steps_into_epoch < self._steps_per_epoch:
                    self.save_checkpoint(epoch, samples_consumed=self._steps_into_epoch * samples_per_step,
                                         intermediate=True)
            pbar.close()
            self.epochs_run += 1
            self._steps_into_epoch = 0
            self.save_checkpoint(epoch, samples_consumed=0, intermediate=self.epochs_run < self.total_epochs)
        self._profiler.stop()

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Save adapter + merged weights; with ``intermediate`` also the state to resume from here."""
        state: Dict[str, Any] = {}
        model_sd = {k: v.detach().cpu() for k, v in self._model.state_dict().items()}
        state[training.ADAPTER_KEY] = get_adapter_state_dict(model_sd)
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
                training.OPT_KEY: self._optimizer.state_dict(),
                training.LR_SCHEDULER_KEY: self._lr_scheduler.state_dict(),
                training.SEED_KEY: self.seed,
                training.EPOCHS_KEY: self.epochs_run,
                training.TOTAL_EPOCHS_KEY: self.total_epochs,
                training.MAX_STEPS_KEY: self.max_steps_per_epoch,
                training.STEPS_KEY: self.global_step,
                training.DATALOADER_KEY: self._sampler.state_dict(samples_consumed),
                training.RNG_KEY: torch.get_rng_state(),
                "samples_per_step": self._gradient_accumulation_steps * self._dataloader.batch_size,
            })
        self._checkpointer.save_checkpoint(
            state, epoch=epoch, intermediate_checkpoint=intermediate, adapter_only=self._save_adapter_weights_only,
            step=self.global_step if samples_consumed > 0 else None, keep_last_n_checkpoints=self._keep_last_n_checkpoints,
        )

    def cleanup(self) -> None:
        self._metric_logger.close()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run lora_finetune_single_device --config <config> [key=value ...]``."""
    config.log_config(recipe_name="LoRAFinetuneRecipeSingleDevice", cfg=cfg)
    recipe = LoRAFinetuneRecipeSingleDevice(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    sys.exit(recipe_main())
