"""YAML configs for recipes: load, override from the command line, validate, instantiate.

A config node with a ``_component_`` key names a class or function by dotted path; its other
keys are that callable's keyword arguments. See docs/config.md.
"""

from torchtune.config._errors import ConfigError, InstantiationError
from torchtune.config._instantiate import instantiate
from torchtune.config._loading import find_config_file, load_config
from torchtune.config._log_config import log_config
from torchtune.config._parse import apply_overrides, parse
from torchtune.config._redaction import is_secret_key, REDACTED, redact_secrets, redacted_yaml
from torchtune.config._unused import find_unused_keys, warn_unused_keys
from torchtune.config._validate import validate

__all__ = [
    "ConfigError",
    "InstantiationError",
    "REDACTED",
    "apply_overrides",
    "find_config_file",
    "find_unused_keys",
    "instantiate",
    "is_secret_key",
    "load_config",
    "log_config",
    "parse",
    "redact_secrets",
    "redacted_yaml",
    "validate",
    "warn_unused_keys",
]
