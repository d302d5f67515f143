"""Parameter names between Hugging Face and our decoder, both ways from one description.

An architecture lists :class:`Rename` rules (a module of ours is a module of theirs, with the
same tensors) and :class:`Fused` rules (one tensor of theirs is several of ours, e.g. a fused
``qkv_proj``). Loading applies the rules forwards, saving backwards, so a round trip is the
identity by construction; a key no rule matches is an error, never dropped silently.
"""

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

StateDict = Dict[str, torch.Tensor]
# (tensor, config) -> parts, and (parts, config) -> tensor
Splitter = Callable[[torch.Tensor, Mapping], List[torch.Tensor]]
Joiner = Callable[[List[torch.Tensor], Mapping], torch.Tensor]


@dataclass(frozen=True)
class Rename:
    """Our module ``tune`` is their module ``hf``; ``{i}`` stands for the layer index.

    Attributes:
        tune (str): e.g. ``"layers.{i}.attn.q_proj"``.
        hf (str): e.g. ``"model.layers.{i}.self_attn.q_proj"``.
        params (Dict[str, str]): our parameter name -> theirs where they differ (RMSNorm's
            ``scale`` is their ``weight``); others keep their name.
        transpose (bool): their weight is stored ``[in, out]`` (GPT-2's ``Conv1D``).
    """

    tune: str
    hf: str
    params: Dict[str, str] = field(default_factory=dict)
    transpose: bool = False


@dataclass(frozen=True)
class Fused:
    """Their module ``hf`` holds the tensors of several of ours (``tune``), split along rows.

    Attributes:
        tune (Tuple[str, ...]): our modules, in the order ``split`` returns them.
        hf (str): their module.
        split (Splitter): one of their tensors (weight or bias) -> ours.
        join (Joiner): ours -> theirs; the inverse of ``split``.
        transpose (bool): their weight is stored ``[in, out]``.
    """

    tune: Tuple[str, ...]
    hf: str
    split: Splitter
    join: Joiner
    transpose: bool = False


@dataclass(frozen=True)
class Ignore:
    """Their tensor ``hf`` (a regular expression) carries no weight of ours: a cached causal mask
    or RoPE frequencies that older checkpoints saved. Dropped on load, never written."""

    hf: str


Rule = object  # Rename, Fused or Ignore


def _pattern(template: str) -> "re.Pattern[str]":
    return re.compile("^" + re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)") + r"\.(?P<param>[^.]+)$")


def _fill(template: str, layer: Optional[str]) -> str:
    return template if layer is None else template.replace("{i}", layer)


def _orient(t: torch.Tensor, param: str, transpose: bool) -> torch.Tensor:
    return t.t().contiguous() if transpose and param == "weight" and t.dim() == 2 else t


def to_tune(sd: Mapping[str, torch.Tensor], rules: Sequence[Rule], config: Mapping, source: str = "checkpoint"
            ) -> StateDict:
    """Their state dict -> ours.

    Args:
        sd (Mapping[str, torch.Tensor]): Hugging Face keys (a shard, or all of them).
        rules (Sequence[Rule]): the architecture's rules.
        config (Mapping): parsed config.json (sizes for splits).
        source (str): named in errors. Default "checkpoint".

    Returns:
        StateDict: our keys.

    Raises:
        ValueError: on a key no rule matches (the message names the key).
    """
    compiled = [(rule, _pattern(rule.hf)) for rule in rules if not isinstance(rule, Ignore)]
    ignored = [re.compile(rule.hf) for rule in rules if isinstance(rule, Ignore)]
    out: StateDict = {}
    for key, value in sd.items():
        if any(p.fullmatch(key) for p in ignored):
            continue
        for rule, pattern in compiled:
            match = pattern.match(key)
            if match is None:
                continue
            layer, param = match.groupdict().get("i"), match.group("param")
            value = _orient(value, param, rule.transpose)
            if isinstance(rule, Fused):
                for name, part in zip(rule.tune, rule.split(value, config)):
                    out[f"{_fill(name, layer)}.{param}"] = part
            else:
                ours = {v: k for k, v in rule.params.items()}.get(param, param)
                out[f"{_fill(rule.tune, layer)}.{ours}"] = value
            break
        else:
            raise ValueError(f"{source}: unexpected parameter {key!r} for model_type {config.get('model_type')!r}")
    return out


def from_tune(sd: Mapping[str, torch.Tensor], rules: Sequence[Rule], config: Mapping) -> StateDict:
    """Our state dict -> theirs (the inverse of :func:`to_tune`).

    Raises:
        ValueError: on a key no rule matches, or a fused module with some of its parts missing.
    """
    out: StateDict = {}
    pending: Dict[Tuple[int, Optional[str], str], Dict[str, torch.Tensor]] = {}
    rules = [rule for rule in rules if not isinstance(rule, Ignore)]
    # Our names per rule, compiled once: (name, pattern) for each module a rule covers.
    ours = [[(n, _pattern(n)) for n in (rule.tune if isinstance(rule, Fused) else (rule.tune,))] for rule in rules]
    for key, value in sd.items():
        for index, rule in enumerate(rules):
            match = next(((n, m) for n, pattern in ours[index] for m in [pattern.match(key)] if m), None)
            if match is None:
                continue
            name, m = match
            layer, param = m.groupdict().get("i"), m.group("param")
            if isinstance(rule, Fused):
                pending.setdefault((index, layer, param), {})[name] = value
            else:
                theirs = rule.params.get(param, param)
                out[f"{_fill(rule.hf, layer)}.{theirs}"] = _orient(value, param, rule.transpose)
            break
        else:
            raise ValueError(f"parameter {key!r} has no Hugging Face name for model_type {config.get('model_type')!r}")
    for (index, layer, param), parts in pending.items():
        rule = rules[index]
        if set(parts) != set(rule.tune):
            missing = sorted(set(rule.tune) - set(parts))
            raise ValueError(f"cannot fuse {_fill(rule.hf, layer)}.{param}: missing {missing}")
        joined = rule.join([parts[n] for n in rule.tune], config)
        out[f"{_fill(rule.hf, layer)}.{param}"] = _orient(joined, param, rule.transpose)
    return out


def with_base_prefix(sd: Mapping[str, torch.Tensor], rules: Sequence[Rule], prefix: str) -> StateDict:
    """``sd`` with ``prefix`` put before keys that only match a rule with it: checkpoints of the bare
    base model (the Hub's ``gpt2`` and ``bloom-560m`` files) name ``h.0.ln_1.weight`` for
    ``transformer.h.0.ln_1.weight``."""
    patterns = [_pattern(rule.hf) for rule in rules if not isinstance(rule, Ignore)]
    ignored = [re.compile(rule.hf) for rule in rules if isinstance(rule, Ignore)]

    def known(key: str) -> bool:
        return any(p.match(key) for p in patterns) or any(p.fullmatch(key) for p in ignored)

    return {(key if known(key) or not known(prefix + key) else prefix + key): v for key, v in sd.items()}


def hf_module_of(tune_module: str, rules: Sequence[Rule]) -> Optional[str]:
    """Their module path for one of ours (``layers.0.attn.q_proj``), if a :class:`Rename` maps it."""
    for rule in rules:
        if isinstance(rule, Rename):
            m = re.match("^" + re.escape(rule.tune).replace(r"\{i\}", r"(?P<i>\d+)") + "$", tune_module)
            if m:
                return _fill(rule.hf, m.groupdict().get("i"))
    return None


def split_rows(sizes: Callable[[Mapping], Sequence[int]]) -> Tuple[Splitter, Joiner]:
    """A split of the first dim into consecutive blocks (``[q; k; v]``) and its inverse."""
    return (lambda t, c: list(torch.split(t, list(sizes(c)), dim=0)),
            lambda parts, c: torch.cat(parts, dim=0))


def split_per_head(num_heads: Callable[[Mapping], int], parts: int = 3) -> Tuple[Splitter, Joiner]:
    """A split of rows laid out head by head, ``[n_h, parts, h_d]`` (GPT-NeoX, BLOOM: q, k, v of
    head 0, then of head 1, ...), into ``parts`` tensors of ``[n_h * h_d]`` rows; and its inverse."""

    def split(t: torch.Tensor, c: Mapping) -> List[torch.Tensor]:
        heads = num_heads(c)
        grouped = t.reshape(heads, parts, t.shape[0] // (heads * parts), *t.shape[1:])
        return [grouped[:, i].reshape(-1, *t.shape[1:]) for i in range(parts)]

    def join(tensors: List[torch.Tensor], c: Mapping) -> torch.Tensor:
        heads = num_heads(c)
        stacked = torch.stack([x.reshape(heads, -1, *x.shape[1:]) for x in tensors], dim=1)
        return stacked.reshape(-1, *tensors[0].shape[1:])

    return split, join
