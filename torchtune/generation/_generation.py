"""Autoregressive decoding of a batch of left-padded prompts, with or without a KV cache."""

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from torchtune.generation._masks import (
    get_causal_mask_from_padding_mask,
    get_position_ids_from_padding_mask,
)
from torchtune.generation._sampling import _check_sampling_args, sample


def _stop_check_interval(device: torch.device) -> int:
    """Steps between "have all rows stopped?" checks, each a host synchronisation.

    On an accelerator every sync stalls the launch queue, so the question is asked every few
    steps; the extra steps only produce padding, trimmed at the end. On CPU the check costs
    nothing next to a forward pass.
    """
    return 1 if device.type == "cpu" else 8


def _logits_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(
        "generate needs the model to return logits as one tensor [b, s, v], got "
        f"{type(output).__name__}; call model.set_num_output_chunks(0) and do not request "
        "output_hidden_states while generating"
    )


def generate_next_token(
    model: nn.Module,
    input_pos: torch.Tensor,
    x: torch.Tensor,
    q: Optional[torch.Tensor] = None,
    *,
    mask: Optional[torch.Tensor] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run the model on ``x`` and sample the token that follows its last position.

    This is the per-step function of :func:`generate`; pass a compiled copy of it as
    ``custom_generate_next_token`` to compile the decode step.

    Args:
        model (nn.Module): decoder returning logits ``[b, s, v]``.
        input_pos (torch.Tensor): ``[b, s]`` positions of ``x``.
        x (torch.Tensor): ``[b, s]`` token ids.
        q (Optional[torch.Tensor]): ``[b, v]`` Exponential(1) noise for sampling (see :func:`sample`).
        mask (Optional[torch.Tensor]): boolean ``[b, s, s_kv]`` attention mask, True = attend.
        temperature (float): 0 means greedy. Default 1.0.
        top_k (Optional[int]): top-k filter. Default None.
        top_p (Optional[float]): nucleus filter (extension over torchtune). Default None.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: the sampled tokens ``[b, 1]`` and the logits ``[b, s, v]``.
    """
    logits = _logits_tensor(model(x, input_pos=input_pos, mask=mask))
    token = sample(logits[:, -1], temperature=temperature, top_k=top_k, q=q, top_p=top_p)
    return token, logits


def _caches_enabled(model: nn.Module) -> bool:
    caches_are_enabled = getattr(model, "caches_are_enabled", None)
    return callable(caches_are_enabled) and bool(caches_are_enabled())


def _check_generate_args(
    model: nn.Module, prompt: torch.Tensor, max_generated_tokens: int, use_cache: bool
) -> None:
    if max_generated_tokens < 1:
        raise ValueError(f"max_generated_tokens must be >= 1, got {max_generated_tokens}")
    if prompt.dim() != 2 or prompt.shape[1] == 0:
        raise ValueError(f"prompt must have shape [s] or [b, s] with s >= 1, got {tuple(prompt.shape)}")
    # The last generated token is never fed back, so the model sees s + n - 1 positions.
    needed = prompt.shape[1] + max_generated_tokens - 1
    # Positions must also stay within max_seq_len with a cache: RoPE tables end there.
    limits = [(getattr(model, "max_seq_len", None), "the model's max_seq_len")]
    if use_cache:
        limits.insert(0, (model.decoder_max_cache_seq_len, "the KV cache length (decoder_max_seq_len)"))
    for limit, what in limits:
        if limit is not None and needed > limit:
            raise ValueError(
                f"prompt length ({prompt.shape[1]}) + max_generated_tokens ({max_generated_tokens}) - 1 "
                f"= {needed} exceeds {what} ({limit})"
            )


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: torch.Tensor,
    *,
    max_generated_tokens: int,
    pad_id: int = 0,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    stop_tokens: Optional[List[int]] = None,
    rng: Optional[torch.Generator] = None,
    custom_generate_next_token: Optional[Callable] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Continue a batch of prompts token by token.

    Prompts of different lengths are left-padded with ``pad_id``: in every row, the leading run
    of ``pad_id`` is padding and everything from the first other token on is content (so
    ``pad_id`` inside a prompt is kept as a token). Padding is never attended and the first
    real token of every row gets position 0, so each row decodes exactly as it would alone.
    ``pad_id`` need not be a valid token id (e.g. -1): the model never reads it.

    With the model's KV caches enabled (``model.setup_caches(...)``), the caches are reset, the
    whole prompt is prefilled in one forward and each following step feeds one token. Without
    caches (or inside ``disable_kv_cache``), every step runs the model over the whole sequence
    so far; both paths give the same tokens. The caches are left filled after the call; the
    next call resets them.

    After a row emits a token of ``stop_tokens``, its later tokens are ``pad_id``; decoding
    ends early once every row has stopped, and the outputs are trimmed to the last step at
    which some row was still running.

    Args:
        model (nn.Module): decoder with ``forward(tokens, *, input_pos, mask) -> [b, s, v]`` logits,
            e.g. :class:`~torchtune.modules.TransformerDecoder`; put it in ``eval()`` mode first.
        prompt (torch.Tensor): ``[b, s]`` or ``[s]`` token ids, left-padded with ``pad_id``.
        max_generated_tokens (int): number of tokens to generate per row.
        pad_id (int): padding id of the prompt and of finished rows. Default 0.
        temperature (float): softmax temperature; 0 means greedy decoding. Default 1.0.
        top_k (Optional[int]): sample among the ``top_k`` most likely tokens. Default None.
        top_p (Optional[float]): nucleus sampling threshold (extension over torchtune). Default None.
        stop_tokens (Optional[List[int]]): ids that end a row (the stop token itself is kept).
        rng (Optional[torch.Generator]): generator, on the prompt's device, for the sampling
            noise; the global RNG if None. Greedy decoding draws no noise.
        custom_generate_next_token (Optional[Callable]): replaces :func:`generate_next_token`
            for every step after the first (the prefill), e.g. a ``torch.compile``-d copy.

    Returns:
        Tuple[torch.Tensor, torch.Tensor]: ``tokens [b, s + n]`` (the prompt followed by the
        generated ids, in the prompt's dtype) and ``logits [b, n, v]`` of each generated
        position, with ``n <= max_generated_tokens`` (smaller when all rows stopped early).
        Logits of a row after its stop token describe padding and carry no meaning.

    Raises:
        ValueError: on a bad shape or sampling argument, a row made only of ``pad_id``, or a
            prompt plus generation longer than the KV cache (or ``max_seq_len`` without one).
    """
    _check_sampling_args(temperature, top_k, top_p)
    if prompt.dim() == 1:
        prompt = prompt.unsqueeze(0)
    use_cache = _caches_enabled(model)
    _check_generate_args(model, prompt, max_generated_tokens, use_cache)
    b, s = prompt.shape
    n = max_generated_tokens
    device = prompt.device

    padding_mask = (prompt != pad_id).cumsum(dim=1) > 0  # [b, s], False on the leading pad run
    if not bool(padding_mask[:, -1].all()):
        raise ValueError(f"every prompt row needs at least one token other than pad_id ({pad_id})")

    tokens = torch.full((b, s + n), pad_id, dtype=prompt.dtype, device=device)  # returned
    tokens[:, :s] = prompt
    # What the model reads. pad_id need not be a valid embedding row (Llama2's tokenizer has
    # pad_id -1), so padding is read as id 0 and finished rows keep reading their own samples;
    # the mask hides the former and the outputs of the latter are discarded.
    inputs = tokens.clone()
    inputs[:, :s].masked_fill_(~padding_mask, 0)
    next_token_fn = custom_generate_next_token or generate_next_token
    sampling: Dict[str, Any] = {"temperature": temperature, "top_k": top_k}
    if top_p is not None:  # keeps torchtune-style custom_generate_next_token callables working
        sampling["top_p"] = top_p

    if use_cache:
        cache_len = model.decoder_max_cache_seq_len
        model.reset_caches()
        first_mask = get_causal_mask_from_padding_mask(padding_mask, target_seq_len=cache_len)
        first_pos = get_position_ids_from_padding_mask(padding_mask)
        # Decode-step state, updated in place: the visible cache slots and the next position.
        step_mask = F.pad(padding_mask, (0, cache_len - s), value=False).unsqueeze(1)  # [b, 1, cache_len]
        step_pos = first_pos[:, -1:] + 1  # [b, 1]
    else:
        full_padding = F.pad(padding_mask, (0, n), value=True)  # generated tokens are real
        full_mask = get_causal_mask_from_padding_mask(full_padding)  # [b, s + n, s + n]
        full_pos = get_position_ids_from_padding_mask(full_padding)  # [b, s + n]
        first_mask, first_pos = full_mask[:, :s, :s], full_pos[:, :s]

    stop = torch.tensor(stop_tokens, device=device) if stop_tokens else None
    done = torch.zeros(b, dtype=torch.bool, device=device)
    check_every = _stop_check_interval(device)

    # Prefill: the whole prompt in one forward.
    logits = _logits_tensor(model(inputs[:, :s], input_pos=first_pos, mask=first_mask))[:, -1]  # [b, v]
    vocab_size = logits.shape[-1]
    # Sampling noise: one buffer refilled in place at every step (greedy decoding draws none).
    q_buffer = None if temperature == 0 else torch.empty(b, vocab_size, device=device)

    def noise() -> Optional[torch.Tensor]:
        return None if q_buffer is None else q_buffer.exponential_(1, generator=rng)

    token = sample(logits, q=noise(), **sampling)  # [b, 1]
    all_logits = torch.empty(b, n, vocab_size, dtype=logits.dtype, device=device)

    steps = 0
    for k in range(n):
        if k > 0:
            q = noise()
            if use_cache:
                step_mask[:, :, s + k - 1] = True  # the slot the fed token is written to
                token, step_logits = next_token_fn(
                    model, step_pos, inputs[:, s + k - 1 : s + k], q, mask=step_mask, **sampling
                )
                step_pos += 1
            else:
                length = s + k
                token, step_logits = next_token_fn(
                    model, full_pos[:, :length], inputs[:, :length], q,
                    mask=full_mask[:, :length, :length], **sampling,
                )
            logits = step_logits[:, -1]
        inputs[:, s + k] = token.squeeze(1)
        if stop is not None:
            token = token.masked_fill(done.unsqueeze(1), pad_id)
            done |= torch.isin(token.squeeze(1), stop)
        tokens[:, s + k] = token.squeeze(1)
        all_logits[:, k] = logits
        steps = k + 1
        if stop is not None and steps % check_every == 0 and bool(done.all()):
            break

    if stop is not None and bool(done.all()):
        # Rows that stopped before the check saw them only added padding columns.
        first_stop = torch.isin(tokens[:, s : s + steps], stop).int().argmax(dim=1)
        steps = int(first_stop.max()) + 1
    return tokens[:, : s + steps], all_logits[:, :steps]
