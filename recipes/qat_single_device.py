"""Quantization-aware full fine-tuning (QAT) on a single device.

    tune run qat_single_device --config dev/tiny_qat_single_device

The algorithm, top to bottom:
1. load the checkpoint into the model, then ``quantizer.prepare`` it: every linear layer
   simulates, in its forward, the quantization the model will ship with (fake quantization,
   straight-through gradients); the weights themselves stay in full precision;
2. train as ``full_finetune_single_device`` does (token-normalised gradient accumulation, clip,
   optimizer and LR schedule steps), with fake quantization off for the first
   ``fake_quant_after_n_steps`` optimizer steps (``training.quantization.FakeQuantizeAfterNSteps``);
3. save the full-precision weights in the checkpointer's layout, every epoch and on request every
   ``save_every_n_steps`` steps with the state to resume mid-epoch;
4. convert afterwards: ``tune run quantize`` with the same quantizer quantizes the saved
   checkpoint for real (``quantizer.convert``), with the numerics the model trained against.
"""

import sys

from omegaconf import DictConfig

from torchtune import config, modules, training, utils
from torchtune.training.quantization import FakeQuantizeAfterNSteps, get_quantizer_mode

log = utils.get_logger("INFO")

# Top-level config keys this recipe reads (others get a warning).
CONFIG_KEYS = training.FINETUNE_CONFIG_KEYS | {"quantizer", "fake_quant_after_n_steps", "optimizer_in_bwd"}


class QATRecipeSingleDevice:
    """Quantization-aware full fine-tuning of a decoder on one device.

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/dev/tiny_qat_single_device.yaml``).

    Raises:
        ValueError: if ``quantizer`` is not a QAT quantizer, or ``optimizer_in_bwd`` is set.
    """

    def __init__(self, cfg: DictConfig) -> None:
        if cfg.get("optimizer_in_bwd", False):
            raise ValueError("qat_single_device does not step the optimizer in backward; set optimizer_in_bwd=False")
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device)
        self._quantizer = config.instantiate(cfg.get("quantizer", None))
        if "qat" not in (get_quantizer_mode(self._quantizer) or ""):
            raise ValueError(
                "quantizer must be a QAT quantizer of torchtune.training.quantization (Int8DynActInt4WeightQATQuantizer "
                f"or Int4WeightOnlyQATQuantizer), got {cfg.get('quantizer', None)}"
            )
        self._resume_from_checkpoint = cfg.get("resume_from_checkpoint", False)
        self._keep_last_n_checkpoints = cfg.get("keep_last_n_checkpoints", None)
        self._state = training.RecipeState.from_config(cfg)

    # ------------------------------------------------------------------ setup
    def setup(self, cfg: DictConfig) -> None:
        """Build the fake-quantized model, data and optimizer from the config; restore them when resuming."""
        self._metric_logger = training.setup_metric_logger(cfg)
        self._checkpointer, checkpoint = training.load_recipe_checkpoint(cfg.checkpointer, self._resume_from_checkpoint)
        resume = self._state.resume_from(checkpoint, self._resume_from_checkpoint)

        with training.set_default_dtype(self._dtype), self._device:
            self._model = config.instantiate(cfg.model)
        training.load_model_state_dict(self._model, checkpoint[training.MODEL_KEY])
        self._model = self._quantizer.prepare(self._model)  # same parameters, fake-quantized forward
        if cfg.get("enable_activation_checkpointing", False):
            training.set_activation_checkpointing(self._model, auto_wrap_policy={modules.TransformerSelfAttentionLayer})
        if cfg.get("compile", False):
            training.compile_model(self._model)
        training.log_model_info(self._model, self._device, self._dtype,
                                log_memory=cfg.get("log_peak_memory_stats", False))

        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._optimizer = config.instantiate(cfg.optimizer, self._model.parameters())
        if resume is not None:
            self._optimizer.load_state_dict(checkpoint[training.OPT_KEY])
        self._loss_fn = training.prepare_loss(config.instantiate(cfg.loss), self._model,
                                              compile=cfg.get("compile", False))
        self._loss_step = FakeQuantizeAfterNSteps(self._state, cfg.get("fake_quant_after_n_steps", None))

        self._data = training.setup_sft_data(cfg, self._tokenizer, ignore_index=self._loss_fn.ignore_index,
                                             seed=self._state.seed)
        self._loop = training.TrainLoop.from_config(cfg, self._state, self._data, self._metric_logger, self._device,
                                                    optimizer=self._optimizer, ckpt=resume)
        self._state.restore_rng_state(resume)

    # -------------------------------------------------------------- training
    def train(self) -> None:
        """Train until ``epochs`` are done (``training.TrainLoop`` runs the steps)."""
        self._loop.run(self._model, self._loss_fn, self._optimizer, save_checkpoint=self.save_checkpoint,
                       loss_step=self._loss_step)

    # ----------------------------------------------------------- checkpoint
    def save_checkpoint(self, epoch: int, *, samples_consumed: int, intermediate: bool) -> None:
        """Save the full-precision weights; with ``intermediate`` also the state to resume from here."""
        weights = {training.MODEL_KEY: {k: v.detach().cpu() for k, v in self._model.state_dict().items()}}
        self._loop.save(self._checkpointer, weights, epoch, samples_consumed=samples_consumed,
                        intermediate=intermediate,
                        optimizer_state=self._optimizer.state_dict() if intermediate else None,
                        keep_last_n_checkpoints=self._keep_last_n_checkpoints)

    def cleanup(self) -> None:
        self._metric_logger.close()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run qat_single_device --config <config> [key=value ...]``."""
    config.log_config(recipe_name="QATRecipeSingleDevice", cfg=cfg)
    config.warn_unused_keys(cfg, CONFIG_KEYS)
    recipe = QATRecipeSingleDevice(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    sys.exit(recipe_main())
