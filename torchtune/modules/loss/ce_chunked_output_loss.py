"""Token cross-entropy over logits that the model returns in sequence chunks."""
import functools
from typing import List, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from torchtune.modules.loss._chunked import check_reduction, reduce_sum, sum_over_chunks


class CEWithChunkedOutputLoss(nn.Module):
    """Cross-entropy over logits chunked along the sequence, upcast to fp32 one chunk at a time.

    Pair it with ``model.set_num_output_chunks(loss.num_output_chunks)``: the model then returns a
    list of ``[b, s_i, v]`` low-precision logits chunks and no fp32 copy of the full ``[b, s, v]``
    logits ever exists (the largest tensor of fine-tuning with a big vocabulary).

    Reductions (``l_i`` the fp32 cross-entropy of trained token ``i``, ``N`` the number of tokens
    whose label is not ``ignore_index``):

    - ``"mean"``: ``sum_i l_i / N`` (equal to ``F.cross_entropy(..., ignore_index=...)``; 0 if N = 0);
    - ``"sum"``: ``sum_i l_i``. Recipes use this with ``torchtune.training.GradientAccumulator``,
      which divides the gradients of a whole accumulation window by its total token count.

    Args:
        num_output_chunks (int): chunks the model splits its output into. Default 8.
        ignore_index (int): label of untrained positions. Default -100.
        reduction (str): default reduction, ``"mean"`` or ``"sum"``. Default ``"mean"``.

    Raises:
        ValueError: for a non-positive ``num_output_chunks`` or an unknown reduction.
    """

    def __init__(self, num_output_chunks: int = 8, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__()
        if num_output_chunks < 1:
            raise ValueError(f"num_output_chunks must be >= 1, got {num_output_chunks}")
        self.num_output_chunks = num_output_chunks
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)

    def compute_cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """fp32 cross-entropy of one chunk.

        Args:
            logits (torch.Tensor): ``[n, v]`` logits in any precision.
            labels (torch.Tensor): ``[n]`` labels.
            normalize (bool): divide the chunk's summed loss by its number of non-ignored tokens
                (0 when there are none). ``forward`` passes False and normalises over the whole
                batch instead. Default True.

        Returns:
            torch.Tensor: 0-dim fp32 mean (``normalize``) or sum over the chunk's non-ignored tokens.
        """
        total = F.cross_entropy(logits.float(), labels, ignore_index=self.ignore_index, reduction="sum")
        if not normalize:
            return total
        return total / (labels != self.ignore_index).sum().clamp(min=1)

    def forward(
        self,
        logits: Union[List[torch.Tensor], torch.Tensor],
        labels: torch.Tensor,
        reduction: Optional[str] = None,
    ) -> torch.Tensor:
        """
        Args:
            logits (Union[List[torch.Tensor], torch.Tensor]): chunks ``[b, s_i, v]`` whose lengths add
                up to ``s`` (as returned after ``set_num_output_chunks``), or one ``[b, s, v]``
                tensor, which is then processed in ``num_output_chunks`` pieces.
            labels (torch.Tensor): shifted labels ``[b, s]`` (see ``torchtune.training.shift_labels``).
            reduction (Optional[str]): ``"mean"`` or ``"sum"``; the constructor's if None.

        Returns:
            torch.Tensor: 0-dim fp32 loss.

        Raises:
            ValueError: if the logits do not line up with ``labels``.
        """
        reduction = check_reduction(reduction or self.reduction)
        if labels.dim() != 2:
            raise ValueError(f"labels must have shape [batch_size, seq_len], got {tuple(labels.shape)}")
        if isinstance(logits, torch.Tensor):
            if logits.dim() != 3 or logits.shape[:2] != labels.shape:
                raise ValueError(
                    f"logits {tuple(logits.shape)} must be [b, s, vocab] matching labels {tuple(labels.shape)}"
                )
            # Flattened tokens chunk into contiguous views; the sum does not care about the order.
            flat_logits = logits.reshape(-1, logits.shape[-1]).chunk(self.num_output_chunks)
            flat_labels = labels.reshape(-1).chunk(self.num_output_chunks)
            pairs = zip(flat_logits, flat_labels)
        else:
            lengths = [chunk.shape[1] if chunk.dim() == 3 else -1 for chunk in logits]
            if not logits or -1 in lengths or sum(lengths) != labels.shape[1] or any(
                chunk.shape[0] != labels.shape[0] for chunk in logits
            ):
                raise ValueError(
                    f"logits chunks {[tuple(c.shape) for c in logits]} must be [b, s_i, vocab] with the s_i "
                    f"adding up to the labels' sequence length; labels are {tuple(labels.shape)}"
                )
            pairs = (
                (chunk.reshape(-1, chunk.shape[-1]), label_chunk.reshape(-1))
                for chunk, label_chunk in zip(logits, labels.split(lengths, dim=1))
            )
        # Sums per chunk; the reduction below normalises over the whole batch's trained tokens.
        total = sum_over_chunks(functools.partial(self.compute_cross_entropy, normalize=False), pairs)
        return reduce_sum(total, (labels != self.ignore_index).sum(), reduction)
