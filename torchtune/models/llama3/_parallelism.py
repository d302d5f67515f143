"""Tensor-parallel plan of the Llama-style decoders (``torch.distributed.tensor.parallel``)."""

from typing import Dict

from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel
from torch.distributed.tensor.parallel.style import ParallelStyle


def base_llama_tp_plan() -> Dict[str, ParallelStyle]:
    """Megatron-style tensor parallelism for a :func:`~torchtune.modules.build_decoder` model.

    Pass it to ``torch.distributed.tensor.parallel.parallelize_module(model, mesh, plan)``.
    q/k/v and the MLP's ``w1``/``w3`` split their output features (heads, MLP width) across
    ranks, and ``output_proj``/``w2`` split their input features, so each attention block and
    MLP needs a single all-reduce. The embedding table is split by vocabulary rows and the
    output projection by vocabulary columns, gathered into full logits. Each rank then holds
    ``num_heads / tp`` query heads: the caller sets ``attn.num_heads`` and ``attn.num_kv_heads``
    of every layer to the local counts (``num_kv_heads`` must be divisible by ``tp``).

    Returns:
        Dict[str, ParallelStyle]: module-name patterns (``*`` matches a layer index) to styles;
        a new dict on every call, so callers may edit it.
    """
    return {
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate()),
        "output": ColwiseParallel(output_layouts=Replicate()),
        "layers.*.attn.q_proj": ColwiseParallel(),
        "layers.*.attn.k_proj": ColwiseParallel(),
        "layers.*.attn.v_proj": ColwiseParallel(),
        "layers.*.attn.output_proj": RowwiseParallel(),
        "layers.*.mlp.w1": ColwiseParallel(),
        "layers.*.mlp.w2": RowwiseParallel(),
        "layers.*.mlp.w3": ColwiseParallel(),
    }
