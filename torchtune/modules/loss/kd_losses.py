"""Knowledge-distillation losses: KL divergences between a student's and a teacher's next-token distributions.

For each trained position (label not ``ignore_index``) with student distribution ``q = softmax(z_s)`` and
teacher distribution ``p = softmax(z_t)`` over the vocabulary:

- forward KL  ``KL(p || q) = sum_v p_v (log p_v - log q_v)``  (mass-covering: the student spreads over
  everything the teacher finds likely);
- reverse KL  ``KL(q || p) = sum_v q_v (log q_v - log p_v)``  (mode-seeking);
- symmetric   ``r * KL(p || q) + (1 - r) * KL(q || p)``.

The per-token values are summed over trained positions and, with ``normalize=True``, divided by their
number (0 when there is none). Vocabulary entries where either logit is infinite (a masked token)
contribute 0, so a vocabulary mask shared by both models does not produce NaN.

torchtune v0.6.1's ``ForwardKLLoss`` returns ``-sum_v p_v log q_v``, the cross-entropy to the teacher,
which is the forward KL plus the teacher's entropy: the gradients with respect to the student are the
same, the reported value differs by that constant. These losses report the KL itself (0 when the
student equals the teacher).

The ``*WithChunkedOutputLoss`` variants take the logits as the list of sequence chunks a decoder
returns after ``model.set_num_output_chunks(n)`` (for both student and teacher) and upcast one chunk at
a time to fp32, recomputing it in backward, so no fp32 copy of the whole ``[b, s, v]`` logits exists.
"""

import functools
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from torchtune.modules.loss._chunked import sum_over_chunks

_KINDS = ("forward", "reverse")


def _per_token_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """KL per position in fp32: ``[n, v]`` logits -> ``[n]``."""
    s_logp = F.log_softmax(student_logits.float(), dim=-1)
    t_logp = F.log_softmax(teacher_logits.float(), dim=-1)
    finite = ~(torch.isinf(student_logits) | torch.isinf(teacher_logits))
    if kind == "forward":
        terms = t_logp.exp() * (t_logp - s_logp)
    else:
        terms = s_logp.exp() * (s_logp - t_logp)
    return torch.where(finite, terms, 0.0).sum(dim=-1)


def _summed_kl(student_logits: torch.Tensor, target: Tuple[torch.Tensor, torch.Tensor], *, kinds: Sequence[str],
               weights: Sequence[float], ignore_index: int) -> torch.Tensor:
    """Weighted KL summed over the trained positions of one chunk (``target`` = teacher logits, labels)."""
    teacher_logits, labels = target
    trained = (labels != ignore_index).reshape(-1)
    s, t = student_logits.reshape(-1, student_logits.shape[-1]), teacher_logits.reshape(-1, teacher_logits.shape[-1])
    total = sum(w * _per_token_kl(s, t, k) for k, w in zip(kinds, weights) if w != 0.0)
    return torch.where(trained, total, 0.0).sum()


def _check_ratio(sym_kd_ratio: float) -> float:
    if not 0.0 <= sym_kd_ratio <= 1.0:
        raise ValueError(f"sym_kd_ratio must be in [0, 1], got {sym_kd_ratio}")
    return sym_kd_ratio


def _check_shapes(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> None:
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape [..., vocab]")
    if student_logits.numel() // student_logits.shape[-1] != labels.numel():
        raise ValueError(f"logits {tuple(student_logits.shape)} must have one row per label; labels are "
                         f"{tuple(labels.shape)}")


def _normalized(total: torch.Tensor, labels: torch.Tensor, ignore_index: int, normalize: bool) -> torch.Tensor:
    if not normalize:
        return total
    return total / (labels != ignore_index).sum().clamp(min=1)


class _KLLoss(nn.Module):
    """A weighted sum of forward and reverse KL over whole logits tensors."""

    def __init__(self, weights: Tuple[float, float], ignore_index: int) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self._weights = weights

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                normalize: bool = True) -> torch.Tensor:
        """
        Args:
            student_logits (torch.Tensor): ``[b, s, v]`` (or ``[b * s, v]``), any precision.
            teacher_logits (torch.Tensor): same shape as ``student_logits``.
            labels (torch.Tensor): ``[b, s]`` shifted labels; only their ``ignore_index`` positions matter.
            normalize (bool): divide by the number of trained positions (0 when there is none);
                False returns the sum, as ``training.GradientAccumulator`` expects. Default True.

        Returns:
            torch.Tensor: 0-dim fp32 loss.

        Raises:
            ValueError: if the shapes do not line up.
        """
        _check_shapes(student_logits, teacher_logits, labels)
        total = _summed_kl(student_logits, (teacher_logits, labels), kinds=_KINDS, weights=self._weights,
                           ignore_index=self.ignore_index)
        return _normalized(total, labels, self.ignore_index, normalize)


class ForwardKLLoss(_KLLoss):
    """Forward KL ``KL(teacher || student)`` per trained token (see the module docstring).

    Args:
        ignore_index (int): label of untrained positions. Default -100.
    """

    def __init__(self, ignore_index: int = -100) -> None:
        super().__init__((1.0, 0.0), ignore_index)


class ReverseKLLoss(_KLLoss):
    """Reverse KL ``KL(student || teacher)`` per trained token (see the module docstring).

    Args:
        ignore_index (int): label of untrained positions. Default -100.
    """

    def __init__(self, ignore_index: int = -100) -> None:
        super().__init__((0.0, 1.0), ignore_index)


class SymmetricKLLoss(_KLLoss):
    """``sym_kd_ratio * forward KL + (1 - sym_kd_ratio) * reverse KL`` per trained token.

    Args:
        sym_kd_ratio (float): weight of the forward KL, in ``[0, 1]``. Default 0.5.
        ignore_index (int): label of untrained positions. Default -100.

    Raises:
        ValueError: if ``sym_kd_ratio`` is outside ``[0, 1]``.
    """

    def __init__(self, sym_kd_ratio: float = 0.5, ignore_index: int = -100) -> None:
        super().__init__((_check_ratio(sym_kd_ratio), 1.0 - sym_kd_ratio), ignore_index)
        self.sym_kd_ratio = sym_kd_ratio


def _chunk_pairs(student_logits: Union[List[torch.Tensor], torch.Tensor],
                 teacher_logits: Union[List[torch.Tensor], torch.Tensor], labels: torch.Tensor, num_chunks: int):
    """``(student chunk, (teacher chunk, label chunk))`` pairs along the sequence dimension."""
    if labels.dim() != 2:
        raise ValueError(f"labels must have shape [batch_size, seq_len], got {tuple(labels.shape)}")
    if isinstance(student_logits, torch.Tensor):
        student_logits = list(student_logits.chunk(num_chunks, dim=1))
    if isinstance(teacher_logits, torch.Tensor):
        teacher_logits = list(teacher_logits.chunk(num_chunks, dim=1))
    s_lengths = [c.shape[1] if c.dim() == 3 else -1 for c in student_logits]
    t_lengths = [c.shape[1] if c.dim() == 3 else -1 for c in teacher_logits]
    if not s_lengths or s_lengths != t_lengths or -1 in s_lengths or sum(s_lengths) != labels.shape[1]:
        raise ValueError(
            f"student chunks {[tuple(c.shape) for c in student_logits]} and teacher chunks "
            f"{[tuple(c.shape) for c in teacher_logits]} must be [b, s_i, vocab] with the same s_i, adding up to "
            f"the labels' sequence length {labels.shape[1]} (set the same num_output_chunks on both models)"
        )
    for s, t in zip(student_logits, teacher_logits):
        _check_shapes(s, t, labels[:, : s.shape[1]])
    return zip(student_logits, zip(teacher_logits, labels.split(s_lengths, dim=1)))


class _ChunkedKLLoss(nn.Module):
    """A weighted sum of forward and reverse KL over sequence chunks of logits."""

    def __init__(self, num_output_chunks: int, weights: Tuple[float, float], ignore_index: int) -> None:
        super().__init__()
        if num_output_chunks < 1:
            raise ValueError(f"num_output_chunks must be >= 1, got {num_output_chunks}")
        self.num_output_chunks = num_output_chunks
        self.ignore_index = ignore_index
        self._weights = weights

    def forward(self, student_logits: List[torch.Tensor], teacher_logits: List[torch.Tensor], labels: torch.Tensor,
                normalize: bool = True) -> torch.Tensor:
        """
        Args:
            student_logits (List[torch.Tensor]): chunks ``[b, s_i, v]`` adding up to ``s`` (or one
                ``[b, s, v]`` tensor, split into ``num_output_chunks``).
            teacher_logits (List[torch.Tensor]): the teacher's chunks, of the same shapes.
            labels (torch.Tensor): ``[b, s]`` shifted labels.
            normalize (bool): divide by the number of trained positions (0 when there is none);
                False returns the sum. Default True.

        Returns:
            torch.Tensor: 0-dim fp32 loss.

        Raises:
            ValueError: if the chunks do not line up with each other or with ``labels``.
        """
        compute = functools.partial(_summed_kl, kinds=_KINDS, weights=self._weights, ignore_index=self.ignore_index)
        total = sum_over_chunks(compute, _chunk_pairs(student_logits, teacher_logits, labels, self.num_output_chunks))
        return _normalized(total, labels, self.ignore_index, normalize)


class ForwardKLWithChunkedOutputLoss(_ChunkedKLLoss):
    """:class:`ForwardKLLoss` over logits chunked along the sequence, one fp32 chunk at a time.

    Args:
        num_output_chunks (int): chunks both models split their output into. Default 8.
        ignore_index (int): label of untrained positions. Default -100.
    """

    def __init__(self, num_output_chunks: int = 8, ignore_index: int = -100) -> None:
        super().__init__(num_output_chunks, (1.0, 0.0), ignore_index)


class ReverseKLWithChunkedOutputLoss(_ChunkedKLLoss):
    """:class:`ReverseKLLoss` over logits chunked along the sequence, one fp32 chunk at a time.

    Args:
        num_output_chunks (int): chunks both models split their output into. Default 8.
        ignore_index (int): label of untrained positions. Default -100.
    """

    def __init__(self, num_output_chunks: int = 8, ignore_index: int = -100) -> None:
        super().__init__(num_output_chunks, (0.0, 1.0), ignore_index)


class SymmetricKLWithChunkedOutputLoss(_ChunkedKLLoss):
    """:class:`SymmetricKLLoss` over logits chunked along the sequence, one fp32 chunk at a time.

    Args:
        num_output_chunks (int): chunks both models split their output into. Default 8.
        sym_kd_ratio (float): weight of the forward KL, in ``[0, 1]``. Default 0.5.
        ignore_index (int): label of untrained positions. Default -100.

    Raises:
        ValueError: if ``sym_kd_ratio`` is outside ``[0, 1]``.
    """

    def __init__(self, num_output_chunks: int = 8, sym_kd_ratio: float = 0.5, ignore_index: int = -100) -> None:
        super().__init__(num_output_chunks, (_check_ratio(sym_kd_ratio), 1.0 - sym_kd_ratio), ignore_index)
        self.sym_kd_ratio = sym_kd_ratio
