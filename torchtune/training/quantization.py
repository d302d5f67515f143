"""Weight quantization with torchao: post-training quantizers and quantization-aware training (QAT).

Each quantizer is a small object with ``quantize(model) -> model`` that swaps the weights of
every ``nn.Linear`` for a torchao quantized tensor, in place. The names and arguments are the
ones torchtune configs use (``quantizer: {_component_: torchtune.training.quantization...}``).

A quantized model's ``state_dict()`` holds those torchao tensors. It is saved with
``torch.save`` and read back with ``torch.load(weights_only=True)``: importing this module
imports torchao's tensor classes, which register themselves with
``torch.serialization.add_safe_globals``. To reload, build the model, quantize it with the same
quantizer (which gives every weight the right type) and load the state dict into it; see
``recipes/generate.py`` and ``docs/quantization.md``.

What runs where with torchao 0.18 (checked on an AVX-512 CPU):

* ``Int8WeightOnlyQuantizer``: CPU and CUDA, any dtype.
* ``Int4WeightOnlyQuantizer``: on CPU the ``Int4OpaqueTensor`` format (torchao's prototype
  ``PrototypeInt4WeightOnlyConfig``, kernel ``aten._weight_int4pack_mm_for_cpu``); on CUDA the
  tinygemm ``tile_packed_to_4d`` format (compute capability >= 8.0, bf16). The packed layouts
  differ, so a checkpoint is tied to the device type it was quantized on. torchao's default
  ``plain`` int4 format needs the ``mslk`` GPU kernels and does not run on CPU.
* ``Int8DynActInt4WeightQuantizer``: CPU and CUDA (``IntxUnpackedToInt8Tensor``).
"""

from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn
from torchao.quantization import (
    Int4WeightOnlyConfig,
    Int8DynamicActivationIntxWeightConfig,
    Int8WeightOnlyConfig,
    PerGroup,
    PerRow,
    quantize_,
)
from torchao.quantization.qat import FakeQuantizeConfig, IntxFakeQuantizeConfig, QATConfig
from torchao.quantization.quant_primitives import ZeroPointDomain
from torchao.utils import TorchAOBaseTensor

from torchtune.training._model_state import load_model_state_dict
from torchtune.utils import get_logger

log = get_logger()

try:  # CPU int4 lives in torchao's prototype namespace in 0.18
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
except ImportError:  # pragma: no cover - depends on the installed torchao
    PrototypeInt4WeightOnlyConfig = None

__all__ = [
    "FakeQuantizeAfterNSteps",
    "Int4WeightOnlyQATQuantizer",
    "Int4WeightOnlyQATQuantizerModuleSwap",
    "Int4WeightOnlyQuantizer",
    "Int8DynActInt4WeightQATQuantizer",
    "Int8DynActInt4WeightQATQuantizerModuleSwap",
    "Int8DynActInt4WeightQuantizer",
    "Int8WeightOnlyQuantizer",
    "set_fake_quantize_enabled",
    "get_model_size_bytes",
    "get_quantizer_mode",
    "load_quantized_model",
    "validate_quantized_state_dict",
]

_INT4_GROUP_SIZES = (32, 64, 128, 256)


def _is_linear(module: nn.Module, fqn: str) -> bool:
    return isinstance(module, nn.Linear)


def _linears(model: nn.Module) -> Dict[str, nn.Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def _weight_device(model: nn.Module) -> torch.device:
    linears = _linears(model)
    if not linears:
        raise ValueError("the model has no nn.Linear layers to quantize")
    return next(iter(linears.values())).weight.device


def _check_group_size(model: nn.Module, groupsize: int, quantizer: str) -> None:
    # torchao skips, without an error, a layer whose input size is not a multiple of the group
    # size; a half-quantized model would then pass for a quantized one.
    bad = [f"{name} (in_features={m.in_features})" for name, m in _linears(model).items()
           if m.in_features % groupsize != 0]
    if bad:
        raise ValueError(
            f"{quantizer}: groupsize={groupsize} must divide the input size of every linear layer; "
            f"it does not for {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}; pick a smaller groupsize"
        )


class Int8WeightOnlyQuantizer:
    """int8 weight-only quantization: symmetric, one scale per output channel.

    Activations stay in the model's dtype; each weight is stored as int8 plus a scale per row.
    On CPU the matmul dequantizes on the fly, so it saves memory (4x fewer weight bytes than
    fp32) rather than time.

    Example:
        >>> model = Int8WeightOnlyQuantizer().quantize(model)
    """

    def quantize(self, model: nn.Module) -> nn.Module:
        """Quantize every ``nn.Linear`` weight of ``model`` in place.

        Args:
            model (nn.Module): a model in eval mode with real (not meta) weights.

        Returns:
            nn.Module: the same model.
        """
        _weight_device(model)
        quantize_(model, Int8WeightOnlyConfig(granularity=PerRow(), set_inductor_config=False), filter_fn=_is_linear)
        return model


class Int4WeightOnlyQuantizer:
    """int4 weight-only quantization: asymmetric, one scale and zero point per group of inputs.

    The packed format is chosen from the device of the model's weights (see the module
    docstring): quantize on the device type you will run on. On CPU, run the quantized model
    in bf16: the CPU int4 kernel is about 30x slower with fp32 activations on this hardware.

    Args:
        groupsize (int): input features sharing one scale and zero point; one of 32, 64, 128,
            256, and it must divide every linear layer's input size. Default 128.
        inner_k_tiles (int): tile parameter of the CUDA tinygemm layout; torchao 0.18 fixes it
            at 8, so only 8 is accepted (kept for torchtune config compatibility). Default 8.

    Raises:
        ValueError: on an unsupported ``groupsize`` or ``inner_k_tiles``.
    """

    def __init__(self, groupsize: int = 128, inner_k_tiles: int = 8) -> None:
        if groupsize not in _INT4_GROUP_SIZES:
            raise ValueError(f"Int4WeightOnlyQuantizer: groupsize must be one of {_INT4_GROUP_SIZES}, got {groupsize}")
        if inner_k_tiles != 8:
            raise ValueError(
                f"Int4WeightOnlyQuantizer: torchao 0.18 packs int4 with inner_k_tiles=8 only, got {inner_k_tiles}"
            )
        self.groupsize = groupsize
        self.inner_k_tiles = inner_k_tiles

    def quantize(self, model: nn.Module) -> nn.Module:
        """Quantize every ``nn.Linear`` weight of ``model`` in place.

        Args:
            model (nn.Module): a model with real weights on CPU, or on CUDA in bf16.

        Returns:
            nn.Module: the same model.

        Raises:
            ValueError: if ``groupsize`` does not divide a layer's input size.
            RuntimeError: if the weights are on a device torchao 0.18 has no int4 kernel for, or
                the installed torchao lacks the CPU int4 format.
        """
        device = _weight_device(model)
        _check_group_size(model, self.groupsize, type(self).__name__)
        if device.type == "cpu":
            if PrototypeInt4WeightOnlyConfig is None:
                raise RuntimeError(
                    "Int4WeightOnlyQuantizer on CPU needs torchao.prototype.quantization.int4 "
                    "(torchao >= 0.14); upgrade torchao or use Int8WeightOnlyQuantizer"
                )
            config = PrototypeInt4WeightOnlyConfig(group_size=self.groupsize, set_inductor_config=False)
        elif device.type == "cuda":
            config = Int4WeightOnlyConfig(
                group_size=self.groupsize, int4_packing_format="tile_packed_to_4d", set_inductor_config=False
            )
        else:
            raise RuntimeError(
                f"Int4WeightOnlyQuantizer: torchao 0.18 has no int4 weight-only kernel for {device.type}; "
                "use Int8WeightOnlyQuantizer or quantize on cpu/cuda"
            )
        quantize_(model, config, filter_fn=_is_linear)
        return model


class Int8DynActInt4WeightQuantizer:
    """int8 dynamic-activation, int4 weight quantization ("8da4w", the ExecuTorch recipe).

    Weights are int4 per group (symmetric); activations are quantized to int8 per token at run
    time. On CPU with torchao 0.18 the int4 values are stored unpacked in int8 and the matmul
    dequantizes, so this mode targets export and accuracy studies more than CPU speed.

    Args:
        groupsize (int): input features sharing one weight scale; must divide every linear
            layer's input size. Default 256.

    Raises:
        ValueError: if ``groupsize`` is not positive.
    """

    def __init__(self, groupsize: int = 256) -> None:
        if groupsize < 1:
            raise ValueError(f"Int8DynActInt4WeightQuantizer: groupsize must be positive, got {groupsize}")
        self.groupsize = groupsize

    def quantize(self, model: nn.Module) -> nn.Module:
        """Quantize every ``nn.Linear`` of ``model`` in place.

        Args:
            model (nn.Module): a model with real weights.

        Returns:
            nn.Module: the same model.

        Raises:
            ValueError: if ``groupsize`` does not divide a layer's input size.
        """
        _weight_device(model)
        _check_group_size(model, self.groupsize, type(self).__name__)
        config = Int8DynamicActivationIntxWeightConfig(
            weight_dtype=torch.int4, weight_granularity=PerGroup(self.groupsize)
        )
        quantize_(model, config, filter_fn=_is_linear)
        return model


# ----------------------------------------------------------------------------------------------
# Quantization-aware training (QAT)
#
# A QAT quantizer has two steps. ``prepare(model)`` swaps every ``nn.Linear`` for torchao's
# ``FakeQuantizedLinear`` (and every ``LoRALinear`` for ``QATLoRALinear``), whose forward
# quantizes and dequantizes weights (and activations) with exactly the numerics of the
# post-training quantizer of the same name, gradients passing straight through. The model then
# trains as usual and its state dict keeps the float layout (``weight``, ``bias``), so
# checkpoints are plain float checkpoints. ``convert(model)`` swaps the fake-quantized layers
# back and quantizes for real with that post-training quantizer; the result has the same torchao
# tensors as ``tune run quantize`` with the post-training quantizer would give, and reloads the
# same way. Built on torchao 0.18's ``QATConfig`` (``quantize_(model, QATConfig(..., step=...))``).


def set_fake_quantize_enabled(model: nn.Module, enabled: bool = True) -> int:
    """Switch the fake quantization of a prepared model on or off (the weights are untouched).

    Args:
        model (nn.Module): a model after a QAT quantizer's ``prepare``.
        enabled (bool): True to simulate quantization, False to train in full precision. Default True.

    Returns:
        int: the number of fake quantizers switched (0 for a model that was not prepared).
    """
    switched = 0
    for module in model.modules():
        for name in ("activation_fake_quantizer", "weight_fake_quantizer"):
            quantizer = getattr(module, name, None)
            if quantizer is not None:
                quantizer.enabled = enabled
                switched += 1
    return switched


class _QATQuantizer:
    """Shared ``prepare`` / ``convert`` / ``quantize`` of the QAT quantizers."""

    def _post_training_quantizer(self) -> Any:
        raise NotImplementedError

    def get_activation_fake_quantize_config(self) -> Optional[FakeQuantizeConfig]:
        """The fake quantization of the linear layers' inputs (None: inputs stay in full precision)."""
        return None

    def get_weight_fake_quantize_config(self, dtype: torch.dtype = torch.float32) -> FakeQuantizeConfig:
        """The fake quantization of the linear layers' weights, for weights of ``dtype``."""
        raise NotImplementedError

    def prepare(self, model: nn.Module) -> nn.Module:
        """Swap every linear layer for its fake-quantized version, in place (meta weights are fine).

        Args:
            model (nn.Module): the float model (LoRA layers become ``QATLoRALinear``).

        Returns:
            nn.Module: the same model.

        Raises:
            ValueError: if ``groupsize`` does not divide a layer's input size, or the model has no
                linear layers.
        """
        from torchtune.modules.peft.lora import LoRALinear
        from torchtune.modules.peft.qat_lora import QATLoRALinear

        # The adapters' own lora_a / lora_b layers are folded into QATLoRALinear's merged weight.
        adapter_parts = {f"{n}.{c}" for n, m in model.named_modules() if hasattr(m, "adapter_params")
                         for c, _ in m.named_children()}
        linears = {n: m for n, m in model.named_modules()
                   if isinstance(m, (nn.Linear, LoRALinear)) and n not in adapter_parts}
        if not linears:
            raise ValueError(f"{type(self).__name__}.prepare: the model has no linear layers")
        bad = [f"{n} (in_features={getattr(m, 'in_features', getattr(m, 'in_dim', None))})"
               for n, m in linears.items() if getattr(m, "in_features", getattr(m, "in_dim", 0)) % self.groupsize]
        if bad:
            raise ValueError(f"{type(self).__name__}: groupsize={self.groupsize} must divide the input size of every "
                             f"linear layer; it does not for {', '.join(bad[:5])}")
        dtype = next(iter(linears.values())).weight.dtype
        act, weight = self.get_activation_fake_quantize_config(), self.get_weight_fake_quantize_config(dtype)
        for name, module in linears.items():
            if isinstance(module, LoRALinear) and not isinstance(module, QATLoRALinear):
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, child,
                        QATLoRALinear.from_lora_linear(module, act, weight))
        quantize_(model, QATConfig(activation_config=act, weight_config=weight, step="prepare"),
                  filter_fn=lambda m, fqn: type(m) is nn.Linear and fqn not in adapter_parts)
        return model

    def convert(self, model: nn.Module) -> nn.Module:
        """Quantize a prepared (or plain float) model for real, in place.

        LoRA layers must have been merged first (the recipes save merged float checkpoints,
        which the ``quantize`` recipe loads into the base model).

        Args:
            model (nn.Module): the trained model, with real weights.

        Returns:
            nn.Module: the same model, its linear weights now torchao quantized tensors.

        Raises:
            ValueError: if the model still holds LoRA layers.
        """
        from torchtune.modules.peft.lora import LoRALinear

        lora = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
        if lora:
            raise ValueError(f"{type(self).__name__}.convert: merge the LoRA adapters first (found {lora[0]}); "
                             "quantize the merged checkpoint the recipe saved")
        quantize_(model, QATConfig(step="convert"))  # FakeQuantizedLinear -> nn.Linear, weights shared
        return self._post_training_quantizer().quantize(model)

    def quantize(self, model: nn.Module) -> nn.Module:
        """``convert``: lets the generate recipe and ``load_quantized_model`` rebuild a converted model."""
        return self.convert(model)


class Int8DynActInt4WeightQATQuantizer(_QATQuantizer):
    """QAT for :class:`Int8DynActInt4WeightQuantizer` (8da4w): int8 per-token activations, int4 weights.

    Fake quantization: activations asymmetric int8 per token (dynamic), weights symmetric int4 per
    group of ``groupsize`` inputs, as torchao 0.18 infers them from the 8da4w post-training config.

    Args:
        groupsize (int): input features sharing one weight scale; must divide every linear
            layer's input size. Default 256.
        padding_allowed (bool): torchtune / torchao compatibility; torchao 0.18 never pads, so only
            False is accepted. Default False.
        precision (torch.dtype): kept for config compatibility; the converted layers keep the
            model's dtype. Default torch.float32.
        scales_precision (torch.dtype): dtype of the weight scales; torchao 0.18's 8da4w stores
            fp32 scales, so only torch.float32 is accepted. Default torch.float32.

    Raises:
        ValueError: on a non-positive ``groupsize``, ``padding_allowed=True`` or other scales.
    """

    def __init__(self, groupsize: int = 256, padding_allowed: bool = False, precision: torch.dtype = torch.float32,
                 scales_precision: torch.dtype = torch.float32) -> None:
        if groupsize < 1:
            raise ValueError(f"Int8DynActInt4WeightQATQuantizer: groupsize must be positive, got {groupsize}")
        if padding_allowed:
            raise ValueError("Int8DynActInt4WeightQATQuantizer: torchao 0.18 does not pad; set padding_allowed=False "
                             "and a groupsize that divides every layer's input size")
        if scales_precision != torch.float32:
            raise ValueError(f"Int8DynActInt4WeightQATQuantizer: scales are fp32 in torchao 0.18's 8da4w, got "
                             f"scales_precision={scales_precision}")
        self.groupsize = groupsize
        self.padding_allowed = padding_allowed
        self.precision = precision
        self.scales_precision = scales_precision

    def get_activation_fake_quantize_config(self) -> FakeQuantizeConfig:
        return IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False)

    def get_weight_fake_quantize_config(self, dtype: torch.dtype = torch.float32) -> FakeQuantizeConfig:
        return IntxFakeQuantizeConfig(torch.int4, group_size=self.groupsize, is_symmetric=True)

    def _post_training_quantizer(self) -> Int8DynActInt4WeightQuantizer:
        return Int8DynActInt4WeightQuantizer(groupsize=self.groupsize)


class Int4WeightOnlyQATQuantizer(_QATQuantizer):
    """QAT for :class:`Int4WeightOnlyQuantizer` (4w): asymmetric int4 weights per group, float activations.

    Fake quantization follows the int4 kernels' ("tinygemm") numerics: unsigned 4-bit values with a
    scale and a float zero point per group, both in the weight's dtype. On CPU in fp32 the
    fake-quantized layer equals the converted one to rounding (about 1e-7).

    Args:
        groupsize (int): input features sharing one scale and zero point; one of 32, 64, 128
            (the CPU int4 format's sizes) or 256 (CUDA); it must divide every linear layer's
            input size. Default 256.
        inner_k_tiles (int): CUDA tile parameter; torchao 0.18 fixes it at 8. Default 8.
        precision (torch.dtype): kept for config compatibility; the converted layers keep the
            model's dtype. Default torch.bfloat16.
        scales_precision (torch.dtype): kept for config compatibility; scales and zero points
            follow the weight's dtype, as the int4 formats store them. Default torch.bfloat16.

    Raises:
        ValueError: on an unsupported ``groupsize`` or ``inner_k_tiles``.
    """

    def __init__(self, groupsize: int = 256, inner_k_tiles: Optional[int] = 8,
                 precision: torch.dtype = torch.bfloat16, scales_precision: torch.dtype = torch.bfloat16) -> None:
        self._ptq = Int4WeightOnlyQuantizer(groupsize=groupsize, inner_k_tiles=inner_k_tiles)  # validates
        self.groupsize = groupsize
        self.inner_k_tiles = inner_k_tiles
        self.precision = precision
        self.scales_precision = scales_precision

    def get_weight_fake_quantize_config(self, dtype: torch.dtype = torch.float32) -> FakeQuantizeConfig:
        return IntxFakeQuantizeConfig(torch.uint4, group_size=self.groupsize, is_symmetric=False,
                                      zero_point_domain=ZeroPointDomain.FLOAT, scale_precision=dtype,
                                      zero_point_precision=dtype)

    def _post_training_quantizer(self) -> Int4WeightOnlyQuantizer:
        return self._ptq


class Int8DynActInt4WeightQATQuantizerModuleSwap(Int8DynActInt4WeightQATQuantizer):
    """torchtune's name for the module-swap QAT flow of 8da4w; the same as
    :class:`Int8DynActInt4WeightQATQuantizer`, which swaps modules too (torchao 0.18 has no other flow).
    Its checkpoints get the mode ``8da4w-qat-module-swap``."""


class Int4WeightOnlyQATQuantizerModuleSwap(Int4WeightOnlyQATQuantizer):
    """torchtune's name for the module-swap QAT flow of 4w; the same as :class:`Int4WeightOnlyQATQuantizer`.
    Its checkpoints get the mode ``4w-qat-module-swap``."""


class FakeQuantizeAfterNSteps:
    """The SFT micro-batch objective, with fake quantization off for the first ``n`` optimizer steps.

    Starting QAT from a float model with fake quantization on can disturb the first steps; a
    delay lets the model adapt to the data first. Pass an instance as ``TrainLoop.run(loss_step=)``:
    before every micro-batch it reads ``state.global_step`` (optimizer steps taken) and enables
    fake quantization once it reaches ``after_n_steps``, so a resumed run is in the same phase
    as the uninterrupted one.

    Args:
        state (Any): the run's ``training.RecipeState`` (read, never written).
        after_n_steps (Optional[int]): steps trained in full precision; None or 0: fake
            quantization from the start. Default None.
        loss_step (Optional[Callable]): the objective wrapped; None for ``training.sft_loss_step``.
            Default None.
    """

    def __init__(self, state: Any, after_n_steps: Optional[int] = None, loss_step: Optional[Callable] = None) -> None:
        from torchtune.training._recipe_components import sft_loss_step

        if after_n_steps is not None and after_n_steps < 0:
            raise ValueError(f"fake_quant_after_n_steps must be >= 0 or null, got {after_n_steps}")
        self.state = state
        self.after_n_steps = after_n_steps or 0
        self.loss_step = loss_step or sft_loss_step
        self._enabled: Optional[bool] = None

    def __call__(self, model: nn.Module, loss_fn: nn.Module, batch: Dict[str, torch.Tensor],
                 activations_ctx: Any) -> Any:
        enabled = self.state.global_step >= self.after_n_steps
        if enabled != self._enabled:
            set_fake_quantize_enabled(model, enabled)
            if self._enabled is not None or not enabled:
                log.info(f"Fake quantization {'on' if enabled else 'off'} from step {self.state.global_step + 1}")
            self._enabled = enabled
        return self.loss_step(model, loss_fn, batch, activations_ctx)


_MODES: Dict[type, str] = {
    Int8WeightOnlyQuantizer: "8w",
    Int4WeightOnlyQuantizer: "4w",
    Int8DynActInt4WeightQuantizer: "8da4w",
    Int4WeightOnlyQATQuantizer: "4w-qat",
    Int8DynActInt4WeightQATQuantizer: "8da4w-qat",
    Int4WeightOnlyQATQuantizerModuleSwap: "4w-qat-module-swap",
    Int8DynActInt4WeightQATQuantizerModuleSwap: "8da4w-qat-module-swap",
}


def get_quantizer_mode(quantizer: Optional[Callable]) -> Optional[str]:
    """Short name of a quantizer, used in quantized checkpoint file names.

    Args:
        quantizer (Optional[Callable]): a quantizer instance, or None.

    Returns:
        Optional[str]: ``"8w"``, ``"4w"``, ``"8da4w"``, or for the QAT quantizers ``"4w-qat"``,
        ``"8da4w-qat"``, ``"4w-qat-module-swap"``, ``"8da4w-qat-module-swap"``; None for None or an
        unknown quantizer.
    """
    return _MODES.get(type(quantizer))


def _storage_bytes(t: torch.Tensor) -> int:
    flatten = getattr(t, "__tensor_flatten__", None)
    if flatten is None:
        return t.numel() * t.element_size()
    # A torchao tensor reports its logical shape and float dtype; count its inner tensors.
    names, _ = flatten()
    return sum(_storage_bytes(getattr(t, n)) for n in names)


def get_model_size_bytes(model: nn.Module) -> int:
    """Bytes held by a model's parameters and buffers, counting quantized weights at their real size.

    Args:
        model (nn.Module): any model, quantized or not.

    Returns:
        int: the total, e.g. about a quarter of the fp32 size after int8 weight-only quantization.
    """
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(_storage_bytes(t) for t in tensors)


def _kind(t: torch.Tensor) -> str:
    if not isinstance(t, TorchAOBaseTensor):
        return "a plain (not quantized) tensor"
    block = getattr(t, "block_size", None)  # the group size shows up here
    return type(t).__name__ + (f"(block_size={list(block)})" if block is not None else "")


def validate_quantized_state_dict(
    model: nn.Module, state_dict: Dict[str, torch.Tensor], source: Optional[str] = None
) -> None:
    """Check that each tensor of ``state_dict`` has the quantized type of the model's tensor.

    Call it before ``load_state_dict`` when the model was (or should have been) quantized: it
    catches a float checkpoint given to a quantized model, a quantized checkpoint given to a
    model built without ``quantizer``, and a checkpoint written by a different quantizer, all of
    which ``load_state_dict`` would otherwise accept or fail on obscurely. Missing and extra
    keys are left to ``validate_state_dict``.

    Args:
        model (nn.Module): the model about to receive the weights.
        state_dict (Dict[str, torch.Tensor]): the checkpoint.
        source (Optional[str]): where it came from, quoted in the error.

    Raises:
        ValueError: naming the first mismatching keys, both types, and what to change.
    """
    expected = model.state_dict()
    wrong: List[str] = []
    for key, target in expected.items():
        if key in state_dict and _kind(state_dict[key]) != _kind(target):
            wrong.append(f"{key}: checkpoint has {_kind(state_dict[key])}, model expects {_kind(target)}")
    if not wrong:
        return
    where = f" in {source}" if source else ""
    model_quantized = any(isinstance(t, TorchAOBaseTensor) for t in expected.values())
    ckpt_quantized = any(isinstance(t, TorchAOBaseTensor) for t in state_dict.values())
    if model_quantized and not ckpt_quantized:
        hint = ("the checkpoint is not quantized: point the checkpointer at the .pt file written by "
                "`tune run quantize`, or set quantizer: null")
    elif ckpt_quantized and not model_quantized:
        hint = "the checkpoint is quantized: set `quantizer` to the quantizer that wrote it"
    else:
        hint = "the checkpoint was written by a different quantizer (or groupsize) than the config's `quantizer`"
    raise ValueError(f"Quantized weights do not match the model{where}; {hint}:\n  " + "\n  ".join(wrong[:5]))


def load_quantized_model(
    model: nn.Module,
    state_dict: Dict[str, torch.Tensor],
    quantizer: Optional[Any] = None,
    source: Optional[str] = None,
) -> nn.Module:
    """Load a float or quantized checkpoint into a freshly built model, in eval mode.

    A quantized checkpoint holds torchao tensors, which load only into weights of the same
    type; so with ``quantizer`` set the model is quantized *first* (its weights take the
    checkpoint's types) and then receives the state dict. Types are checked with
    ``validate_quantized_state_dict``, keys and shapes with ``training.load_model_state_dict``.

    Args:
        model (nn.Module): the model as built from the config, with real (not meta) weights.
        state_dict (Dict[str, torch.Tensor]): the checkpoint, in the model's key layout.
        quantizer (Optional[Any]): the quantizer that wrote the checkpoint, or None for a float one.
        source (Optional[str]): where the checkpoint came from, quoted in errors.

    Returns:
        nn.Module: the loaded model (quantized when ``quantizer`` is set), in eval mode.

    Raises:
        ValueError: if tensor types, keys or shapes do not match the model.
    """
    if quantizer is not None:
        model = quantizer.quantize(model)
    validate_quantized_state_dict(model, state_dict, source=source)
    load_model_state_dict(model, state_dict, source=source)
    return model.eval()
