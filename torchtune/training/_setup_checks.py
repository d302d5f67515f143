"""Checks a recipe's pieces agree with each other before training starts."""

from typing import Any, Optional

import torch

from torchtune._errors import ModelSetupError


def _embedding_rows(model: torch.nn.Module) -> Optional[int]:
    embedding = getattr(model, "tok_embeddings", None)
    return getattr(embedding, "num_embeddings", None)


def check_vocab_fits(tokenizer: Any, model: torch.nn.Module) -> None:
    """Fail before training when the tokenizer can produce ids the model's embedding has no row for.

    Such ids crash the embedding lookup mid-epoch (an index error on CPU, a device-side assert
    on CUDA) instead of failing at setup. A model without ``tok_embeddings`` or a tokenizer
    without ``vocab_size`` is not checked; a larger embedding than vocabulary (padding rows,
    as Qwen2 and Phi-3 have) is fine.

    Args:
        tokenizer (Any): the model tokenizer (its ``vocab_size`` counts special tokens).
        model (torch.nn.Module): the decoder.

    Raises:
        ModelSetupError: naming both sizes.
    """
    rows = _embedding_rows(model)
    vocab = getattr(tokenizer, "vocab_size", None)
    if rows is None or not isinstance(vocab, int):
        return
    if vocab > rows:
        raise ModelSetupError(
            f"the tokenizer's vocabulary ({vocab} ids) does not fit the model's embedding ({rows} rows): "
            f"set model.vocab_size to at least {vocab}, or use the tokenizer the checkpoint was trained with"
        )
