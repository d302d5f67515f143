"""Post-training weight quantization of a fine-tuned model with torchao.

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
from torchao.utils import TorchAOBaseTensor

from torchtune.training._model_state import load_model_state_dict

try:  # CPU int4 lives in torchao's prototype namespace in 0.18
    from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig
except ImportError:  # pragma: no cover - depends on the installed torchao
    PrototypeInt4WeightOnlyConfig = None

__all__ = [
    "Int4WeightOnlyQuantizer",
    "Int8DynActInt4WeightQuantizer",
    "Int8WeightOnlyQuantizer",
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


_MODES: Dict[type, str] = {
    Int8WeightOnlyQuantizer: "8w",
    Int4WeightOnlyQuantizer: "4w",
    Int8DynActInt4WeightQuantizer: "8da4w",
}


def get_quantizer_mode(quantizer: Optional[Callable]) -> Optional[str]:
    """Short name of a quantizer, used in quantized checkpoint file names.

    Args:
        quantizer (Optional[Callable]): a quantizer instance, or None.

    Returns:
        Optional[str]: ``"8w"``, ``"4w"`` or ``"8da4w"``; None for None or an unknown quantizer.
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
