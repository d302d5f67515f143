"""Post-training quantization of a (fine-tuned) checkpoint with torchao.

    tune run quantize --config quantization

Steps:
1. load the checkpoint with the configured checkpointer and build the model in ``dtype`` on
   ``device``;
2. quantize every linear layer with ``quantizer`` (int8 or int4 weight-only, or 8da4w); a QAT
   quantizer converts the checkpoint of a QAT recipe with the numerics it trained against;
3. save the quantized state dict with ``torch.save`` as
   ``<checkpointer.output_dir>/<first checkpoint file's name>-<mode>.pt`` (``mode`` is ``8w``,
   ``4w``, ``8da4w``, or ``4w-qat`` / ``8da4w-qat`` for the QAT quantizers), written atomically.

The file holds torchao tensor subclasses and loads with ``torch.load(weights_only=True)`` once
``torchtune.training.quantization`` is imported. To generate from it, set the same ``quantizer``
in ``generation.yaml`` and point a ``FullModelTorchTuneCheckpointer`` at the file: the
generation recipe quantizes the model it builds, then loads this state dict into it.
"""

import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from torchtune import config, training, utils
from torchtune.training.quantization import get_model_size_bytes, get_quantizer_mode

log = utils.get_logger("INFO")


class QuantizationRecipe:
    """Quantize a model checkpoint and save the result.

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/quantization.yaml``).

    Raises:
        ValueError: if ``quantizer`` is missing or not one of the (post-training or QAT)
            quantizers of ``torchtune.training.quantization``.
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device, allow_fp16=True)
        self._quantizer = config.instantiate(cfg.get("quantizer", None))
        self._mode = get_quantizer_mode(self._quantizer)
        if self._mode is None:
            raise ValueError(
                "quantizer must be one of torchtune.training.quantization.{Int8WeightOnlyQuantizer, "
                "Int4WeightOnlyQuantizer, Int8DynActInt4WeightQuantizer} or a QAT quantizer "
                f"(Int8DynActInt4WeightQATQuantizer, Int4WeightOnlyQATQuantizer), got {cfg.get('quantizer', None)}"
            )
        training.set_seed(seed=cfg.get("seed", None))

    def setup(self, cfg: DictConfig) -> None:
        """Load the checkpoint and build the float model."""
        checkpointer = config.instantiate(cfg.checkpointer)
        state_dict = checkpointer.load_checkpoint()[training.MODEL_KEY]
        with training.set_default_dtype(self._dtype), self._device:
            self._model = config.instantiate(cfg.model)
        training.load_model_state_dict(self._model, state_dict, source=str(cfg.checkpointer.checkpoint_dir))
        self._model.eval()
        log.info(f"Model on {self._device} in {self._dtype}: {get_model_size_bytes(self._model) / 1e6:.1f} MB")

    @torch.no_grad()
    def quantize(self, cfg: DictConfig) -> None:
        """Quantize the model in place and log the time, size and memory."""
        t0 = time.perf_counter()
        self._model = self._quantizer.quantize(self._model)
        log.info(
            f"Quantized with {type(self._quantizer).__name__} in {time.perf_counter() - t0:.2f} s: "
            f"{get_model_size_bytes(self._model) / 1e6:.1f} MB"
        )
        training.log_memory_stats(training.get_memory_stats(self._device), "Memory stats after quantization:")

    def save_checkpoint(self, cfg: DictConfig) -> Path:
        """Write the quantized state dict next to the checkpointer's outputs.

        Returns:
            Path: the file written.
        """
        first_file = training.expand_checkpoint_files(
            cfg.checkpointer.checkpoint_files, Path(cfg.checkpointer.checkpoint_dir)
        )[0]
        name = Path(first_file).name.split(".")[0]  # model.safetensors.index.json -> model
        path = Path(cfg.checkpointer.output_dir) / f"{name}-{self._mode}.pt"
        size = training.save_torch(self._model.state_dict(), path)
        log.info(f"Saved quantized checkpoint to {path} ({training.format_size(size)})")
        return path


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run quantize --config quantization [key=value ...]``."""
    config.log_config(recipe_name="QuantizationRecipe", cfg=cfg)
    recipe = QuantizationRecipe(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.quantize(cfg=cfg)
    recipe.save_checkpoint(cfg=cfg)


if __name__ == "__main__":
    sys.exit(recipe_main())
