"""``torch.compile`` applied the way that compiles fast and recompiles rarely: per layer."""
import os

import torch
from torch import nn

from torchtune.modules.transformer import TransformerSelfAttentionLayer
from torchtune.utils._logging import get_logger

_log = get_logger()


def _backend() -> str:
    # Overridable for debugging, e.g. TORCH_COMPILE_BACKEND=aot_eager.
    return os.environ.get("TORCH_COMPILE_BACKEND", "inductor")


def compile_model(model: nn.Module, verbose: bool = True) -> None:
    """Compile every ``TransformerSelfAttentionLayer`` of ``model`` in place.

    All layers share one graph, so compiling layer by layer costs one compilation instead of a
    whole-model graph, and works with activation checkpointing wrappers around the layers.

    Args:
        model (nn.Module): the model.
        verbose (bool): log how many layers were compiled. Default True.

    Raises:
        ValueError: if the model has no ``TransformerSelfAttentionLayer``.
    """
    backend = _backend()
    layers = [m for m in model.modules() if isinstance(m, TransformerSelfAttentionLayer)]
    if not layers:
        raise ValueError(f"compile_model found no TransformerSelfAttentionLayer in {type(model).__name__}")
    for layer in layers:
        layer.compile(backend=backend)
    if verbose:
        _log.info(f"Compiled {len(layers)} transformer layers with torch.compile (backend={backend})")


def compile_loss(loss: nn.Module, verbose: bool = True) -> nn.Module:
    """Compile a loss module, returning the same object so its attributes stay readable.

    Chunked losses compile their per-chunk ``compute_cross_entropy`` (so the fp32 upcast fuses
    into the softmax); any other loss is compiled as a whole.

    Args:
        loss (nn.Module): the loss.
        verbose (bool): log the compilation. Default True.

    Returns:
        nn.Module: ``loss`` itself, compiled in place.
    """
    backend = _backend()
    if hasattr(loss, "compute_cross_entropy"):
        loss.compute_cross_entropy = torch.compile(loss.compute_cross_entropy, backend=backend)
    else:
        loss.compile(backend=backend)
    if verbose:
        _log.info(f"Compiled loss {type(loss).__name__} with torch.compile (backend={backend})")
    return loss


# Set to 1 to compile on CPU anyway (see ``compile_enabled``).
COMPILE_ON_CPU_ENV = "TUNE_COMPILE_ON_CPU"


def compile_enabled(requested: bool, device: torch.device) -> bool:
    """Whether a fine-tuning recipe compiles, given the config's ``compile`` and the device.

    ``compile: True`` compiles on accelerators. On CPU it is skipped with an info line, unless
    ``TUNE_COMPILE_ON_CPU=1``: there, compiling made the SFT recipes slower end to end, both the
    first steps (compilation) and the steady steps (``benchmarks/compile_cpu.py``; numbers in
    docs/performance.md), so a 200-step run would be slower with it.

    Args:
        requested (bool): the config's ``compile``.
        device (torch.device): the training device.

    Returns:
        bool
    """
    if not requested:
        return False
    if torch.device(device).type == "cpu" and os.environ.get(COMPILE_ON_CPU_ENV, "0") not in ("1", "true", "True"):
        _log.info("compile: True is skipped on CPU, where compiling made training slower end to end "
                  f"(docs/performance.md); set {COMPILE_ON_CPU_ENV}=1 to compile anyway")
        return False
    return True
