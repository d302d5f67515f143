"""Decoder layers beyond the pre-norm block: a norm after the residual add (post-norm) per
sub-layer, and the parallel attention + MLP residual of GPT-J / GPT-NeoX.

Norm placements per sub-layer ``f`` (attention or MLP), all built from the same parts:

- ``pre``:  ``x + f(norm(x))`` (Llama), :class:`~torchtune.modules.TransformerSelfAttentionLayer`'s
  ``sa_norm`` / ``mlp_norm``;
- ``post``: ``norm(x + f(x))`` (the original Transformer, BERT), ``sa_residual_norm`` /
  ``mlp_residual_norm`` of :class:`TransformerBlockLayer`;
- ``both``: ``x + norm_2(f(norm_1(x)))`` (Gemma 2 and 3), the pre-norm plus a norm of the
  branch output as ``sa_scale`` / ``mlp_scale``.
"""

from typing import Optional

import torch
from torch import nn

from torchtune.modules.transformer import TransformerSelfAttentionLayer


class ReLUSquared(nn.Module):
    """``relu(x) ** 2`` (So et al., 2021, "Primer")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).square()


class TransformerBlockLayer(TransformerSelfAttentionLayer):
    """Self-attention layer with an optional norm after each residual add.

    ``h = res_1(x + sa_scale(attn(sa_norm(x)))); out = res_2(h + mlp_scale(mlp(mlp_norm(h))))``,
    every module optional (identity if None). With no residual norms it is
    :class:`~torchtune.modules.TransformerSelfAttentionLayer`.

    Args:
        attn (nn.Module): self-attention (``MultiHeadAttention`` or ``LinearAttention``).
        mlp (nn.Module): feed-forward module.
        sa_norm (Optional[nn.Module]): norm before attention.
        mlp_norm (Optional[nn.Module]): norm before the MLP.
        sa_scale (Optional[nn.Module]): applied to the attention output (a post-branch norm, a layer scale).
        mlp_scale (Optional[nn.Module]): applied to the MLP output.
        sa_residual_norm (Optional[nn.Module]): norm of ``x + attention``.
        mlp_residual_norm (Optional[nn.Module]): norm of ``h + MLP``.
    """

    def __init__(
        self,
        attn: nn.Module,
        mlp: nn.Module,
        *,
        sa_norm: Optional[nn.Module] = None,
        mlp_norm: Optional[nn.Module] = None,
        sa_scale: Optional[nn.Module] = None,
        mlp_scale: Optional[nn.Module] = None,
        sa_residual_norm: Optional[nn.Module] = None,
        mlp_residual_norm: Optional[nn.Module] = None,
    ) -> None:
        super().__init__(attn, mlp, sa_norm=sa_norm, mlp_norm=mlp_norm, sa_scale=sa_scale, mlp_scale=mlp_scale)
        self.sa_residual_norm = sa_residual_norm or nn.Identity()
        self.mlp_residual_norm = mlp_residual_norm or nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: Optional[torch.Tensor] = None,
        input_pos: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[b, s, d]``.
            mask (Optional[torch.Tensor]): attention mask, as for ``MultiHeadAttention``.
            input_pos (Optional[torch.Tensor]): ``[b, s]`` positions.
            **kwargs: ignored (encoder inputs of fusion layers).

        Returns:
            torch.Tensor: ``[b, s, d]``.
        """
        h = self.sa_norm(x)
        h = self.sa_residual_norm(self.sa_scale(self.attn(h, h, mask=mask, input_pos=input_pos)) + x)
        return self.mlp_residual_norm(self.mlp_scale(self.mlp(self.mlp_norm(h))) + h)


class ParallelTransformerLayer(TransformerSelfAttentionLayer):
    """Attention and MLP read the same input and add to one residual (GPT-J, GPT-NeoX, PaLM):
    ``out = x + sa_scale(attn(sa_norm(x))) + mlp_scale(mlp(mlp_norm(x)))``.

    GPT-NeoX has two norms; GPT-J shares one (pass the same module as ``sa_norm`` and ``mlp_norm``).
    Arguments are those of :class:`~torchtune.modules.TransformerSelfAttentionLayer`.
    """

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: Optional[torch.Tensor] = None,
        input_pos: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[b, s, d]``.
            mask (Optional[torch.Tensor]): attention mask, as for ``MultiHeadAttention``.
            input_pos (Optional[torch.Tensor]): ``[b, s]`` positions.
            **kwargs: ignored.

        Returns:
            torch.Tensor: ``[b, s, d]``.
        """
        h = self.sa_norm(x)
        attn_out = self.sa_scale(self.attn(h, h, mask=mask, input_pos=input_pos))
        return x + attn_out + self.mlp_scale(self.mlp(self.mlp_norm(x)))
