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


Rule = object  # Rename or Fused


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
    compiled = [(rule, _pattern(rule.hf)) for rule in rules]
    out: StateDict = {}
    for key, value in sd.items():
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
    for key, value in sd.items():
        for index, rule in enumerate(rules):
            names = rule.tune if isinstance(rule, Fused) else (rule.tune,)
            match = next(((n, m) for n in names for m in [_pattern(n).match(key)] if m), None)
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
