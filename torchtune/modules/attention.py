from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from torchtune.modules._sdpa import scaled_dot_product_attention
from torchtune.modules.attention_utils import _MaskType, DocumentMask
from torchtune.modules.kv_cache import KVCache
from torchtune.modules.softcapping import softcapped_attention


class MultiHeadAttention(nn.Module):
    """Multi-head attention with grouped keys/values (MHA, GQA and MQA).

    ``num_kv_heads == num_heads`` is MHA, ``1`` is MQA, anything between is GQA
    (Ainslie et al., 2023). The attention itself is
    ``torch.nn.functional.scaled_dot_product_attention``, so the fused kernels of the
    current device are used. Projections, positional embeddings, q/k norms and the cache are
    passed in, so LoRA or quantised layers are swapped in by a builder.

    Args:
        embed_dim (int): model dimension ``d``.
        num_heads (int): query heads.
        num_kv_heads (int): key/value heads; must divide ``num_heads``.
        head_dim (int): per-head size.
        q_proj (nn.Module): ``[b, s, d] -> [b, s, num_heads * head_dim]``.
        k_proj (nn.Module): ``[b, s, d] -> [b, s, num_kv_heads * head_dim]``.
        v_proj (nn.Module): ``[b, s, d] -> [b, s, num_kv_heads * head_dim]``.
        output_proj (nn.Module): ``[b, s, num_heads * head_dim] -> [b, s, d]``.
        pos_embeddings (Optional[nn.Module]): applied to q and k as ``[b, s, n_h, h_d]`` with ``input_pos``.
        q_norm (Optional[nn.Module]): per-head norm of the queries ``[b, s, n_h, h_d]``, applied
            before the positional embedding.
        k_norm (Optional[nn.Module]): per-head norm of the keys, likewise.
        kv_cache (Optional[KVCache]): cache used while ``cache_enabled``.
        max_seq_len (int): longest sequence; also the cache length by default. Default 4096.
        is_causal (bool): causal self-attention when no mask is given. Default True.
        attn_dropout (float): dropout on attention weights during training. Default 0.0.
        sliding_window (Optional[int]): if set, a query attends only to the ``sliding_window``
            most recent positions, itself included (key index ``> query index - sliding_window``),
            on top of the causal or given mask, also while decoding with the cache. Default None.
        scale (Optional[float]): multiplier of ``q k^T``; ``head_dim ** -0.5`` if None (Gemma 2
            and 3: ``query_pre_attn_scalar ** -0.5``). Default None.
        logit_softcapping (Optional[float]): if set, scores become ``cap * tanh(scores / cap)``
            before masking and softmax (Gemma 2: 50); computed by
            :func:`~torchtune.modules.softcapping.softcapped_attention` instead of SDPA. Default None.
        attn_bias (Optional[nn.Module]): additive score bias from positions,
            ``attn_bias(q_pos [b, s_q], k_pos [b, s_kv]) -> [b, n_h, s_q, s_kv]`` (ALiBi, T5's
            relative bias; see :mod:`torchtune.modules.position_bias`), added after scaling.
            Positions are ``input_pos`` (per document in a packed batch) and the cache slots
            while decoding. Default None.
        backend (Optional[nn.Module]): the attention core, called as ``backend(q, k, v, *, mask,
            is_causal, dropout_p, scale, softcap)`` (see :mod:`torchtune.modules.attention_backends`);
            SDPA if None. Default None.

    Raises:
        ValueError: if ``num_heads`` is not divisible by ``num_kv_heads``, ``embed_dim`` not by
            ``num_heads``, ``attn_dropout`` is outside ``[0, 1]`` or ``sliding_window`` is not positive.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        q_proj: nn.Module,
        k_proj: nn.Module,
        v_proj: nn.Module,
        output_proj: nn.Module,
        pos_embeddings: Optional[nn.Module] = None,
        q_norm: Optional[nn.Module] = None,
        k_norm: Optional[nn.Module] = None,
        kv_cache: Optional[KVCache] = None,
        max_seq_len: int = 4096,
        is_causal: bool = True,
        attn_dropout: float = 0.0,
        sliding_window: Optional[int] = None,
        scale: Optional[float] = None,
        logit_softcapping: Optional[float] = None,
        attn_bias: Optional[nn.Module] = None,
        backend: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads != 0:
            raise ValueError(
                f"num_heads ({num_heads}) must be divisible by num_kv_heads ({num_kv_heads})"
            )
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if not 0.0 <= attn_dropout <= 1.0:
            raise ValueError(f"attn_dropout ({attn_dropout}) must be between 0.0 and 1.0")
        if sliding_window is not None and sliding_window < 1:
            raise ValueError(f"sliding_window ({sliding_window}) must be a positive number of positions")
        if (q_norm is None) != (k_norm is None):
            raise ValueError("q_norm and k_norm must be given together")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.max_seq_len = max_seq_len
        self.is_causal = is_causal
        self.attn_dropout = attn_dropout
        self.sliding_window = sliding_window
        self.scale = scale
        self.logit_softcapping = logit_softcapping
        self.attn_bias = attn_bias
        self.backend = backend
        self.q_proj = q_proj
        self.k_proj = k_proj
        self.v_proj = v_proj
        self.output_proj = output_proj
        self.pos_embeddings = pos_embeddings
        self.q_norm = q_norm
        self.k_norm = k_norm
        self.kv_cache = kv_cache
        self.cache_enabled = False

    def setup_cache(self, batch_size: int, dtype: torch.dtype, max_seq_len: int) -> None:
        """Create the KV cache (a no-op if one exists).

        Args:
            batch_size (int): largest batch to decode.
            dtype (torch.dtype): cache dtype.
            max_seq_len (int): number of positions to cache.
        """
        if self.kv_cache is None:
            device = next(self.parameters()).device if any(True for _ in self.parameters()) else None
            self.kv_cache = KVCache(batch_size, max_seq_len, self.num_kv_heads, self.head_dim, dtype)
            if device is not None:
                self.kv_cache.to(device)
        self.cache_enabled = True

    def reset_cache(self) -> None:
        """Empty the KV cache.

        Raises:
            RuntimeError: if no cache was set up.
        """
        if self.kv_cache is None:
            raise RuntimeError("Key value caches are not setup. Call model.setup_caches() first.")
        self.kv_cache.reset()

    def forward(
        self,
        x: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        *,
        mask: Optional[_MaskType] = None,
        input_pos: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): queries' input ``[b, s_x, d]``.
            y (Optional[torch.Tensor]): keys'/values' input ``[b, s_y, d]``; ``x`` if None
                (self-attention), except in a non-causal (cross-)attention decoding with its cache,
                where None reuses the keys/values cached from the last ``y``.
            mask (Optional[torch.Tensor]): boolean ``[b, s_x, s_kv]`` (True = attend), for packed
                sequences or decoding with a cache; causal attention is used when None. A
                :class:`~torchtune.modules.attention_utils.DocumentMask` (padding-free batch,
                ``b == 1``) makes each document attend on its own.
            input_pos (Optional[torch.Tensor]): positions ``[b, s_x]`` of the tokens, for RoPE.

        Returns:
            torch.Tensor: ``[b, s_x, d]``.

        Raises:
            ValueError: for a ``DocumentMask`` while decoding with the KV cache.
        """
        b, s_x, _ = x.shape
        use_cache = self.kv_cache is not None and self.cache_enabled
        # Cross-attention (not causal) while decoding with y=None: the keys/values cached from the
        # encoder output are reused.
        reuse_kv = y is None and use_cache and not self.is_causal
        y = x if y is None else y
        s_y = y.shape[1]

        q = self.q_proj(x).view(b, s_x, self.num_heads, self.head_dim)
        # q/k norms before RoPE, as Qwen3, Gemma 3 and OLMo 2 do: the norm's per-channel scale does
        # not commute with the rotation.
        if self.q_norm is not None:
            q = self.q_norm(q)
        if self.pos_embeddings is not None:
            q = self.pos_embeddings(q, input_pos=input_pos)
        q = q.transpose(1, 2)  # [b, n_h, s_x, h_d]
        if not reuse_kv:
            k = self.k_proj(y).view(b, s_y, self.num_kv_heads, self.head_dim)
            v = self.v_proj(y).view(b, s_y, self.num_kv_heads, self.head_dim)
            if self.k_norm is not None:
                k = self.k_norm(k)
            if self.pos_embeddings is not None:
                k = self.pos_embeddings(k, input_pos=input_pos)
            k, v = k.transpose(1, 2), v.transpose(1, 2)  # [b, n_kv, s_y, h_d]

        if isinstance(mask, DocumentMask):
            if use_cache:
                raise ValueError("a padding-free batch (DocumentMask) cannot be decoded with a KV cache")
            out = self._attend_documents(q, k, v, mask)
        else:
            # Index of the first query in the key axis: its cache slot while decoding, else 0.
            q_start = self.kv_cache.size if use_cache and (self.sliding_window is not None or self.attn_bias is not None) else 0
            if use_cache and not self.is_causal:
                # Cross-attention: the cache holds one encoder output, written when it is given.
                if not reuse_kv:
                    self.kv_cache.reset()
                    self.kv_cache.update(k, v)
                n = self.kv_cache.size
                k, v = self.kv_cache.k_cache[:b, :, :n], self.kv_cache.v_cache[:b, :, :n]  # [b, n_kv, s_e, h_d]
            elif use_cache:
                k, v = self.kv_cache.update(k, v)  # [b, n_kv, max_seq_len, h_d]
            out = self._attend(q, k, v, mask, input_pos, use_cache, q_start)  # [b, n_h, s_x, h_d]
        out = out.transpose(1, 2).reshape(b, s_x, self.num_heads * self.head_dim)
        return self.output_proj(out)

    # Left out of torch.compile graphs: the loop over documents would otherwise be specialised to
    # (and recompile for) every batch's document lengths, while the layer's other ops compile once.
    @torch.compiler.disable
    def _attend_documents(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: DocumentMask) -> torch.Tensor:
        """Each document of a padding-free row attends on its own, exactly as if it were the only sequence."""
        return torch.cat([self._attend(q[:, :, a:e], k[:, :, a:e], v[:, :, a:e], None, None, False, 0)
                          for a, e in mask.spans], dim=2)

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: Optional[torch.Tensor],
        input_pos: Optional[torch.Tensor],
        use_cache: bool,
        q_start: int,
    ) -> torch.Tensor:
        """The attention core on projected heads: ``q`` ``[b, n_h, s_q, h_d]``, ``k``, ``v``
        ``[b, n_kv, s_kv, h_d]`` -> ``[b, n_h, s_q, h_d]``, with this module's window, bias,
        soft-cap and backend; ``q_start`` is the first query's index in the key axis."""
        x_device, s_x = q.device, q.shape[2]
        if self.sliding_window is not None:
            mask = self._windowed_mask(mask, s_x, k.shape[2], q_start, x_device)
        if mask is not None and mask.dim() == 3:
            mask = mask[:, None, :, :]  # broadcast over heads
        dropout_p = self.attn_dropout if self.training else 0.0
        is_causal = mask is None and self.is_causal and not use_cache
        if self.attn_bias is not None:
            mask = self._biased_mask(mask, is_causal, input_pos, q_start, s_x, k.shape[2], use_cache, x_device)
            mask = mask.to(q.dtype)  # SDPA wants a float mask in the queries' dtype
            is_causal = False
        if self.backend is not None:
            out = self.backend(q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout_p, scale=self.scale,
                               softcap=self.logit_softcapping)
        elif self.logit_softcapping is not None:  # no SDPA kernel caps the scores
            out = softcapped_attention(q, k, v, softcap=self.logit_softcapping, scale=self.scale, attn_mask=mask,
                                       is_causal=is_causal, dropout_p=dropout_p)
        else:
            out = scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=dropout_p,
                is_causal=is_causal,
                enable_gqa=self.num_heads != self.num_kv_heads,
                scale=self.scale,
            )
        return out

    def _biased_mask(
        self,
        mask: Optional[torch.Tensor],
        is_causal: bool,
        input_pos: Optional[torch.Tensor],
        q_start: int,
        s_q: int,
        s_kv: int,
        use_cache: bool,
        device: torch.device,
    ) -> torch.Tensor:
        """``attn_bias`` of the query and key positions, with the (causal or given) mask as -inf: ``[b, n_h, s_q, s_kv]``."""
        if input_pos is None:
            q_pos = torch.arange(q_start, q_start + s_q, device=device)[None]
        else:
            q_pos = input_pos if input_pos.dim() == 2 else input_pos[None]
        # Cached keys sit at their positions' slots; without a cache, keys are the queries' tokens.
        k_pos = q_pos if not use_cache and s_kv == s_q else torch.arange(s_kv, device=device)[None]
        bias = self.attn_bias(q_pos, k_pos)  # [b or 1, n_h, s_q, s_kv]
        if is_causal:
            mask = torch.ones(s_q, s_kv, dtype=torch.bool, device=device).tril_()
        if mask is None:
            return bias
        if mask.dtype == torch.bool:
            return bias.masked_fill(~mask, float("-inf"))
        return bias + mask

    def _windowed_mask(
        self, mask: Optional[_MaskType], s_q: int, s_kv: int, q_start: int, device: torch.device
    ) -> torch.Tensor:
        """``mask`` (or the causal mask) restricted to the sliding window: ``[s_q, s_kv]`` or ``[b, s_q, s_kv]``."""
        q_idx = torch.arange(q_start, q_start + s_q, device=device)[:, None]
        k_idx = torch.arange(s_kv, device=device)[None, :]
        in_window = (q_idx - k_idx < self.sliding_window) & (k_idx - q_idx < self.sliding_window)
        if mask is None:
            return in_window & (k_idx <= q_idx) if self.is_causal else in_window
        if mask.dtype != torch.bool:
            raise ValueError("sliding_window needs a boolean mask (True = attend)")
        return mask & in_window
