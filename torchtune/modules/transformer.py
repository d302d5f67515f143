import copy
from typing import Callable, Dict, List, Optional, Union

import torch
from torch import nn

from torchtune.modules.attention import MultiHeadAttention
from torchtune.modules.attention_utils import _MaskType, causal_mask, DocumentMask
from torchtune.modules.softcapping import tanh_softcap


class TransformerSelfAttentionLayer(nn.Module):
    """Pre-norm transformer block: ``h = x + attn(norm(x)); out = h + mlp(norm(h))``.

    Args:
        attn (MultiHeadAttention): self-attention module.
        mlp (nn.Module): feed-forward module.
        sa_norm (Optional[nn.Module]): norm before attention; identity if None.
        mlp_norm (Optional[nn.Module]): norm before the MLP; identity if None.
        sa_scale (Optional[nn.Module]): scales the attention output (e.g. layer scale); identity if None.
        mlp_scale (Optional[nn.Module]): scales the MLP output; identity if None.
    """

    def __init__(
        self,
        attn: MultiHeadAttention,
        mlp: nn.Module,
        *,
        sa_norm: Optional[nn.Module] = None,
        mlp_norm: Optional[nn.Module] = None,
        sa_scale: Optional[nn.Module] = None,
        mlp_scale: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.attn = attn
        self.mlp = mlp
        self.sa_norm = sa_norm or nn.Identity()
        self.mlp_norm = mlp_norm or nn.Identity()
        self.sa_scale = sa_scale or nn.Identity()
        self.mlp_scale = mlp_scale or nn.Identity()

    def setup_caches(
        self,
        batch_size: int,
        dtype: torch.dtype,
        *,
        encoder_max_seq_len: Optional[int] = None,
        decoder_max_seq_len: int,
    ) -> None:
        """Set up the attention's KV cache for ``decoder_max_seq_len`` positions."""
        self.attn.setup_cache(batch_size, dtype, max_seq_len=decoder_max_seq_len)

    def caches_are_setup(self) -> bool:
        return self.attn.kv_cache is not None

    def caches_are_enabled(self) -> bool:
        return self.attn.cache_enabled

    def reset_cache(self) -> None:
        self.attn.reset_cache()

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: Optional[_MaskType] = None,
        input_pos: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): ``[b, s, d]``.
            mask (Optional[torch.Tensor]): boolean ``[b, s, s_kv]``; causal if None.
            input_pos (Optional[torch.Tensor]): ``[b, s]`` token positions.
            **kwargs: ignored (accepted for interface compatibility with fusion layers).

        Returns:
            torch.Tensor: ``[b, s, d]``.
        """
        h = self.sa_norm(x)
        h = self.sa_scale(self.attn(h, h, mask=mask, input_pos=input_pos)) + x
        return self.mlp_scale(self.mlp(self.mlp_norm(h))) + h


class TransformerDecoder(nn.Module):
    """Decoder-only transformer: embeddings, a stack of layers, a final norm and an output projection.

    Args:
        tok_embeddings (nn.Embedding): ``[b, s] -> [b, s, d]``.
        layers (Union[nn.Module, List[nn.Module], nn.ModuleList]): a single layer (cloned
            ``num_layers`` times) or the list of layers.
        max_seq_len (int): longest sequence the model accepts.
        num_heads (int): query heads (used to size caches).
        head_dim (int): per-head size.
        norm (nn.Module): final norm.
        output (Union[nn.Linear, Callable]): ``[b, s, d] -> [b, s, vocab]``.
        num_layers (Optional[int]): number of clones when ``layers`` is a single module.
        output_hidden_states (Optional[List[int]]): indices of layers whose inputs are also returned.
        output_softcapping (Optional[float]): if set, logits become ``cap * tanh(logits / cap)``
            (Gemma 2: 30), also chunk by chunk and inside ``LinearCrossEntropyLoss``. Default None.
        post_embedding (Optional[nn.Module]): applied to the embedded sequence before the first
            layer as ``post_embedding(h, input_pos=input_pos)``: absolute positions, a
            post-embedding norm (:class:`~torchtune.modules.input_embeddings.PostEmbedding`). Default None.
        memory_tokens (Optional[nn.Module]): learned vectors prepended to the embedded sequence and
            dropped before the output (:class:`~torchtune.modules.input_embeddings.MemoryTokens`);
            they take positions ``0 .. m - 1`` and need a causal batch (no mask, no ``input_pos``
            on the call that writes them). Default None.

    Raises:
        ValueError: if ``layers`` is one module and ``num_layers`` is not given.
    """

    def __init__(
        self,
        *,
        tok_embeddings: nn.Embedding,
        layers: Union[nn.Module, List[nn.Module], nn.ModuleList],
        max_seq_len: int,
        num_heads: int,
        head_dim: int,
        norm: nn.Module,
        output: Union[nn.Linear, Callable],
        num_layers: Optional[int] = None,
        output_hidden_states: Optional[List[int]] = None,
        output_softcapping: Optional[float] = None,
        post_embedding: Optional[nn.Module] = None,
        memory_tokens: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        if isinstance(layers, nn.ModuleList):
            pass
        elif isinstance(layers, list):
            layers = nn.ModuleList(layers)
        else:
            if num_layers is None:
                raise ValueError("num_layers must be given when `layers` is a single layer to clone")
            layers = nn.ModuleList([copy.deepcopy(layers) for _ in range(num_layers)])
        self.tok_embeddings = tok_embeddings
        self.layers = layers
        self.norm = norm
        self.output = output
        self.output_hidden_states = output_hidden_states or []
        self.output_softcapping = output_softcapping
        self.post_embedding = post_embedding
        self.memory_tokens = memory_tokens
        self.max_seq_len = max_seq_len
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.num_output_chunks = 0
        self.decoder_max_cache_seq_len: Optional[int] = None
        # Set by LinearCrossEntropyLoss.set_model_output: forward returns the normed hidden states
        # [b, s, d] and the loss applies `output` chunk by chunk.
        self.skip_output_layer = False

    def set_num_output_chunks(self, num_output_chunks: int) -> None:
        """Return logits as a list of ``num_output_chunks`` chunks along the sequence.

        Used with ``CEWithChunkedOutputLoss`` so that fp32 logits of the whole sequence are
        never materialised at once. 0 returns a single tensor.
        """
        self.num_output_chunks = num_output_chunks

    def setup_caches(
        self,
        batch_size: int,
        dtype: torch.dtype,
        *,
        encoder_max_seq_len: Optional[int] = None,
        decoder_max_seq_len: Optional[int] = None,
    ) -> None:
        """Set up KV caches of every layer for inference.

        Args:
            batch_size (int): largest batch to decode.
            dtype (torch.dtype): cache dtype.
            encoder_max_seq_len (Optional[int]): unused by a text-only decoder.
            decoder_max_seq_len (Optional[int]): cache length; the model's ``max_seq_len`` if None.
        """
        self.decoder_max_cache_seq_len = decoder_max_seq_len or self.max_seq_len
        for layer in self.layers:
            layer.setup_caches(
                batch_size,
                dtype,
                encoder_max_seq_len=encoder_max_seq_len,
                decoder_max_seq_len=self.decoder_max_cache_seq_len,
            )
        device = self.tok_embeddings.weight.device
        self.register_buffer(
            "causal_mask", causal_mask(self.decoder_max_cache_seq_len, device=device), persistent=False
        )

    def caches_are_setup(self) -> bool:
        """True once ``setup_caches`` has run."""
        return self.layers[0].caches_are_setup()

    def caches_are_enabled(self) -> bool:
        """True while the caches are in use (see ``torchtune.generation.disable_kv_cache``)."""
        return self.layers[0].caches_are_enabled()

    def reset_caches(self) -> None:
        """Empty every layer's KV cache.

        Raises:
            RuntimeError: if caches were not set up.
        """
        if not self.caches_are_setup():
            raise RuntimeError("Key value caches are not setup. Call model.setup_caches() first.")
        for layer in self.layers:
            layer.reset_cache()

    def _layers_take_document_masks(self) -> bool:
        """Whether every layer is a self-attention layer of ``MultiHeadAttention``, which attends
        document by document (others get a ``DocumentMask`` as the equivalent dense mask)."""
        for layer in self.layers:
            layer = getattr(layer, "_checkpoint_wrapped_module", layer)
            if not (isinstance(layer, TransformerSelfAttentionLayer) and isinstance(layer.attn, MultiHeadAttention)):
                return False
        return True

    def _cache_position(self) -> int:
        return self.layers[0].attn.kv_cache.size

    def chunked_output(self, last_hidden_state: torch.Tensor) -> List[torch.Tensor]:
        """Apply the output projection to ``num_output_chunks`` chunks along the sequence.

        Chunked logits let a chunked cross-entropy loss upcast one chunk to fp32 at a time.

        Args:
            last_hidden_state (torch.Tensor): the final-normed hidden state ``[b, s, d]``.

        Returns:
            List[torch.Tensor]: ``num_output_chunks`` logits tensors ``[b, s / num_output_chunks, vocab]``
            (the last may be shorter).
        """
        # A sequence slice of [b, s, d] is not contiguous; projecting it as is makes matmul
        # broadcast (copy) the [vocab, d] weight per batch row. Copying the small chunk avoids that.
        return [
            self.project(chunk.contiguous())
            for chunk in last_hidden_state.chunk(self.num_output_chunks, dim=1)
        ]

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """The output projection, then the logit soft-cap if the model has one.

        Args:
            h (torch.Tensor): normed hidden states ``[..., d]``.

        Returns:
            torch.Tensor: logits ``[..., vocab]``.
        """
        logits = self.output(h)
        if self.output_softcapping is not None:
            logits = tanh_softcap(logits, self.output_softcapping)
        return logits

    def unembed(self, h):
        """Map the last layer's output to logits: the final norm, then the output projection.

        Args:
            h (torch.Tensor): output of the last layer ``[b, s, d]``.

        Returns:
            Union[torch.Tensor, List[torch.Tensor]]: logits ``[b, s, vocab]`` in the model's dtype, or
            their chunks if ``set_num_output_chunks`` was called.
        """
        h = self.norm(h)
        if self.num_output_chunks > 0:
            return self.chunked_output(h)
        return self.project(h)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        mask: Optional[_MaskType] = None,
        encoder_input: Optional[torch.Tensor] = None,
        encoder_mask: Optional[torch.Tensor] = None,
        input_pos: Optional[torch.Tensor] = None,
    ) -> Union[torch.Tensor, List[torch.Tensor]]:
        """
        Args:
            tokens (torch.Tensor): token ids ``[b, s]``.
            mask (Optional[torch.Tensor]): boolean ``[b, s, s]`` (packed sequences) or, with caches
                enabled, ``[b, s, cache_len]``. Causal if None; with caches enabled the causal
                rows for ``input_pos`` are used. A ``DocumentMask`` (``b == 1``, documents end to
                end, ``input_pos`` restarting per document) for a padding-free batch.
            encoder_input (Optional[torch.Tensor]): encoder outputs ``[b, s_e, d_e]`` for layers that
                attend to an encoder (fusion layers); passed to every layer when given.
            encoder_mask (Optional[torch.Tensor]): boolean ``[b, s, s_e]`` mask over ``encoder_input``;
                passed to every layer when given.
            input_pos (Optional[torch.Tensor]): positions ``[b, s]``; with caches enabled and
                None, the next positions of the cache.

        Returns:
            Union[torch.Tensor, List[torch.Tensor]]: logits ``[b, s, vocab]`` (fp32 is not forced);
            a list of chunks if ``set_num_output_chunks`` was called; the normed hidden state
            ``[b, s, d]`` when a fused output-and-loss skips the output layer; preceded by the
            hidden states of ``output_hidden_states`` (as a list) if that is set.

        Raises:
            ValueError: if ``s`` exceeds ``max_seq_len`` (or the cache length) or ``tokens`` is not 2-D.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must have shape [batch_size, seq_len], got {tuple(tokens.shape)}")
        h = self.tok_embeddings(tokens)
        num_memory = 0
        if self.memory_tokens is not None and not (self.caches_are_enabled() and self._cache_position() > 0):
            if mask is not None or input_pos is not None:
                raise ValueError("memory tokens need a causal batch: pass no mask and no input_pos "
                                 "(packed batches cannot carry memory tokens)")
            h = self.memory_tokens(h)  # [b, m + s, d]
            num_memory = h.shape[1] - tokens.shape[1]
        seq_len = h.shape[1]
        if isinstance(mask, DocumentMask):
            # Positions restart in every document: the longest one is what must fit.
            seq_len = mask.max_len
            if not self._layers_take_document_masks():
                mask = mask.dense(tokens.device)
        if seq_len > self.max_seq_len:
            raise ValueError(
                f"seq_len ({seq_len}) of input tokens exceeds max_seq_len ({self.max_seq_len})"
            )
        if self.caches_are_enabled():
            if input_pos is None:
                start = self._cache_position()
                input_pos = torch.arange(start, start + seq_len, device=tokens.device).unsqueeze(0)
            if mask is None:
                mask = self.causal_mask[input_pos]  # [b, s, cache_len]
                if mask.shape[0] != tokens.shape[0]:
                    mask = mask.expand(tokens.shape[0], -1, -1)
        # Only layers that attend to an encoder take these; plain decoders never see them.
        encoder_kwargs = {}
        if encoder_input is not None:
            encoder_kwargs["encoder_input"] = encoder_input
        if encoder_mask is not None:
            encoder_kwargs["encoder_mask"] = encoder_mask

        if self.post_embedding is not None:
            h = self.post_embedding(h, input_pos=input_pos)
        hidden = []
        for i, layer in enumerate(self.layers):
            if i in self.output_hidden_states:
                hidden.append(h)
            h = layer(h, mask=mask, input_pos=input_pos, **encoder_kwargs)
        h = h[:, num_memory:]  # memory tokens have no logits and no loss

        output = self.norm(h) if self.skip_output_layer else self.unembed(h)
        return hidden + [output] if hidden else output


class TransformerCrossAttentionLayer(nn.Module):
    """Pre-norm block that attends to an encoder's output: ``h = x + attn(norm(x), encoder_input)``,
    ``out = h + mlp(norm(h))``.

    ``attn`` must be non-causal (``is_causal=False``) and usually has no positional embedding.
    While decoding, its KV cache holds the encoder's keys and values: they are computed on the
    call that passes ``encoder_input`` and reused by later calls that pass none. Without an
    encoder input (and nothing cached) the layer is skipped. Query rows whose ``encoder_mask`` row
    is all False read nothing (their attention output is zero).

    Args:
        attn (MultiHeadAttention): cross-attention, ``is_causal=False``.
        mlp (nn.Module): feed-forward module.
        ca_norm (Optional[nn.Module]): norm before attention; identity if None.
        mlp_norm (Optional[nn.Module]): norm before the MLP; identity if None.
        ca_scale (Optional[nn.Module]): applied to the attention output (e.g. a ``TanhGate``); identity if None.
        mlp_scale (Optional[nn.Module]): applied to the MLP output; identity if None.

    Raises:
        ValueError: if ``attn`` is causal.
    """

    def __init__(
        self,
        attn: MultiHeadAttention,
        mlp: nn.Module,
        *,
        ca_norm: Optional[nn.Module] = None,
        mlp_norm: Optional[nn.Module] = None,
        ca_scale: Optional[nn.Module] = None,
        mlp_scale: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        if attn.is_causal:
            raise ValueError("TransformerCrossAttentionLayer needs attention built with is_causal=False")
        self.attn = attn
        self.mlp = mlp
        self.ca_norm = ca_norm or nn.Identity()
        self.mlp_norm = mlp_norm or nn.Identity()
        self.ca_scale = ca_scale or nn.Identity()
        self.mlp_scale = mlp_scale or nn.Identity()

    def setup_caches(
        self, batch_size: int, dtype: torch.dtype, *, encoder_max_seq_len: int, decoder_max_seq_len: int
    ) -> None:
        """Set up the cache of encoder keys/values for ``encoder_max_seq_len`` positions.

        Raises:
            ValueError: if ``encoder_max_seq_len`` is None.
        """
        if encoder_max_seq_len is None:
            raise ValueError("a cross-attention layer needs encoder_max_seq_len in setup_caches")
        self.attn.setup_cache(batch_size, dtype, max_seq_len=encoder_max_seq_len)

    def caches_are_setup(self) -> bool:
        return self.attn.kv_cache is not None

    def caches_are_enabled(self) -> bool:
        return self.attn.cache_enabled

    def reset_cache(self):
        self.attn.reset_cache()

    def forward(
        self,
        x: torch.Tensor,
        *,
        encoder_input: Optional[torch.Tensor] = None,
        encoder_mask: Optional[torch.Tensor] = None,
        **kwargs: Dict,
    ) -> torch.Tensor:
        """
        Args:
            x (torch.Tensor): decoder states ``[b, s, d]``.
            encoder_input (Optional[torch.Tensor]): encoder output ``[b, s_e, d]``; None to reuse the
                cached keys/values while decoding (or to skip the layer when nothing is cached).
            encoder_mask (Optional[torch.Tensor]): boolean ``[b, s, s_e]``, True = attend; all if None.
            **kwargs (Dict): ignored (``mask``/``input_pos`` of self-attention layers).

        Returns:
            torch.Tensor: ``[b, s, d]``.
        """
        cached = self.attn.cache_enabled and self.attn.kv_cache is not None and self.attn.kv_cache.size > 0
        if encoder_input is None and not cached:
            return x
        empty_rows = None
        if encoder_mask is not None:
            # Rows that see no encoder position would be NaN in the softmax: let them attend to
            # everything and zero their output instead.
            empty_rows = ~encoder_mask.any(dim=-1, keepdim=True)  # [b, s, 1]
            encoder_mask = encoder_mask | empty_rows
        attn_out = self.attn(self.ca_norm(x), encoder_input, mask=encoder_mask)
        if empty_rows is not None:
            attn_out = attn_out.masked_fill(empty_rows, 0.0)
        h = self.ca_scale(attn_out) + x
        return self.mlp_scale(self.mlp(self.mlp_norm(h))) + h
