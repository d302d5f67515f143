"""Secrets never reach a log: the one redaction used by ``config.log_config`` and every metric logger.

A value is replaced by ``"<redacted>"`` when any of these holds:

1. Its key names a credential. The key is split into lower-case words on ``_``, ``.``, ``-``,
   spaces and camelCase (``wandb_api_key`` -> ``wandb, api, key``; ``hfToken`` -> ``hf, token``):
   - a word is one of :data:`SECRET_WORDS` (``secret``, ``password``, ``passwd``, ``credentials``,
     ``apikey``, ...), wherever it stands;
   - or the last word is ``token`` (``token``, ``hf_token``, ``access_token``), unless the word
     before it names a tokenizer's special token (``pad_token``, ``bos_token``, ``eos_token``...):
     those hold strings such as ``"<pad>"``. Plural ``tokens`` counts things (``max_tokens``,
     ``num_tokens``, ``max_new_tokens``) and is never masked, nor is ``token`` in the middle of a
     key (``token_file``, ``max_token_len``);
   - or the last word is ``key`` and the key is ``key`` alone or the word before it is one of
     :data:`KEY_QUALIFIERS` (``api_key``, ``access_key``, ``private_key``), so that ``sort_key``
     or ``text_key`` stay readable.
   A secret key's whole value is masked, nested config included; ``None`` stays ``None``.
2. It comes from the environment: in the unresolved config, its string contains an ``oc.env``
   interpolation (``${oc.env:HF_TOKEN}``, ``"Bearer ${oc.env:TOKEN}"``, nested in other
   resolvers), at any depth, in dicts and lists alike. Any other string that contains the
   resolved value of such a node (say ``${..hf_token}`` copied elsewhere) is masked too, when that
   value is at least 4 characters long (shorter ones, like ``"1"``, are no credentials, and
   matching them would mask unrelated values).
3. It looks like a Hugging Face access token (``hf_`` followed by 20 or more letters/digits).
"""

import re
from typing import Any, List, Mapping, Optional, Set

from omegaconf import OmegaConf

REDACTED = "<redacted>"
SECRET_WORDS = frozenset(
    {"secret", "secrets", "password", "passwd", "passphrase", "credential", "credentials", "apikey",
     "authorization", "privatekey"}
)
KEY_QUALIFIERS = frozenset({"api", "access", "secret", "private", "auth", "client", "license", "encryption",
                            "signing", "ssh", "master", "service", "account", "subscription", "hf", "wandb"})
SPECIAL_TOKEN_WORDS = frozenset({"pad", "bos", "eos", "unk", "sep", "cls", "mask", "eot", "start", "end", "stop",
                                 "special", "image", "default"})
MIN_ENV_MATCH = 4  # env values shorter than this are not searched for inside other strings

_WORD_BOUNDARY = re.compile(r"[_.\-\s]+|(?<=[a-z0-9])(?=[A-Z])")
_ENV_INTERPOLATION = re.compile(r"\boc\.env\s*:")
_HF_TOKEN_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{20,}")


def key_words(key: Any) -> List[str]:
    """The lower-case words of a config key (split on ``_ . -``, spaces and camelCase).

    Args:
        key (Any): a config key; non-strings are converted with ``str``.

    Returns:
        List[str]: e.g. ``["wandb", "api", "key"]`` for ``"wandb_api_key"``.
    """
    return [w.lower() for w in _WORD_BOUNDARY.split(str(key)) if w]


def is_secret_key(key: Any) -> bool:
    """Whether a config key names a credential, by the rule in this module's docstring.

    Args:
        key (Any): the key, e.g. ``"hf_token"`` (True) or ``"max_tokens"`` (False).

    Returns:
        bool: True if the value under ``key`` must not be logged.
    """
    words = key_words(key)
    if not words:
        return False
    if any(w in SECRET_WORDS for w in words):
        return True
    before = words[-2] if len(words) > 1 else None
    if words[-1] == "token":
        return before not in SPECIAL_TOKEN_WORDS
    if words[-1] == "key":
        return before is None or before in KEY_QUALIFIERS
    return False


def _env_values(raw: Any, resolved: Any, found: Set[str]) -> None:
    """Collect the resolved strings (of ``MIN_ENV_MATCH`` or more characters) of every node whose
    unresolved form uses ``oc.env``."""
    if isinstance(raw, str) and _ENV_INTERPOLATION.search(raw):
        _strings(resolved, found)
    elif isinstance(resolved, Mapping):
        raw_map = raw if isinstance(raw, Mapping) else {}
        for k, v in resolved.items():
            _env_values(raw_map.get(k), v, found)
    elif isinstance(resolved, (list, tuple)):
        raw_list = raw if isinstance(raw, (list, tuple)) and len(raw) == len(resolved) else [None] * len(resolved)
        for r, v in zip(raw_list, resolved):
            _env_values(r, v, found)


def _strings(value: Any, found: Set[str]) -> None:
    if isinstance(value, Mapping):
        for v in value.values():
            _strings(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _strings(v, found)
    elif value is not None and len(str(value)) >= MIN_ENV_MATCH:
        found.add(str(value))


def _redact(raw: Any, resolved: Any, env: Set[str]) -> Any:
    if isinstance(raw, str) and _ENV_INTERPOLATION.search(raw):
        return REDACTED
    if isinstance(resolved, Mapping):
        raw_map = raw if isinstance(raw, Mapping) else {}
        return {
            k: (REDACTED if v is not None else None) if is_secret_key(k) else _redact(raw_map.get(k), v, env)
            for k, v in resolved.items()
        }
    if isinstance(resolved, (list, tuple)):
        raw_list = raw if isinstance(raw, (list, tuple)) and len(raw) == len(resolved) else [None] * len(resolved)
        return [_redact(r, v, env) for r, v in zip(raw_list, resolved)]
    if isinstance(resolved, str) and (_HF_TOKEN_VALUE.search(resolved) or any(e in resolved for e in env)):
        return REDACTED
    return resolved


def redact_secrets(cfg: Any) -> Any:
    """A copy of a config, interpolations resolved, with every secret replaced by ``"<redacted>"``.

    What counts as a secret is described in this module's docstring: values under credential-like
    keys (``hf_token``, ``api_key``, ``password``; not ``max_tokens`` or ``pad_token``), values
    read from the environment with ``${oc.env:...}`` (and copies of them), and strings that look
    like Hugging Face tokens. ``config.log_config`` and every logger's ``log_config`` in
    ``torchtune.training.metric_logging`` print only what this returns.

    Args:
        cfg (Any): a ``DictConfig``/``ListConfig`` (inspected unresolved for ``oc.env``, then
            resolved), or plain dicts, lists and scalars.

    Returns:
        Any: plain dicts, lists and scalars; the input is not modified.

    Example:
        >>> cfg = OmegaConf.create({"hf_token": "${oc.env:HF_TOKEN}", "max_tokens": 7})
        >>> redact_secrets(cfg)
        {'hf_token': '<redacted>', 'max_tokens': 7}
    """
    if OmegaConf.is_config(cfg):
        raw: Optional[Any] = OmegaConf.to_container(cfg, resolve=False)
        resolved = OmegaConf.to_container(cfg, resolve=True)
    else:
        raw = resolved = cfg
    env: Set[str] = set()
    _env_values(raw, resolved, env)
    return _redact(raw, resolved, env)


def redacted_yaml(cfg: Any) -> str:
    """:func:`redact_secrets` of ``cfg`` as YAML text, the form loggers print or save.

    Args:
        cfg (Any): as for :func:`redact_secrets`.

    Returns:
        str: YAML of the redacted, resolved config.
    """
    return OmegaConf.to_yaml(OmegaConf.create(redact_secrets(cfg)))
