from typing import List

from torchtune._errors import TorchtuneError


class InstantiationError(TorchtuneError, ValueError):
    """A config node cannot be turned into an object.

    Raised for a missing ``_component_``, a dotted path that does not import, or keyword
    arguments the component does not accept. The message names the config key and the path.
    """


class ComponentTypeError(InstantiationError, TypeError):
    """A component refused a config value's type when it was built (also a ``TypeError``)."""


class ConfigError(TorchtuneError, ValueError):
    """A config has one or more problems; all of them are collected in ``errors``.

    Args:
        errors (List[Exception]): every problem found, in config order.
    """

    def __init__(self, errors: List[Exception]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        lines = [f"Config is not well-formed ({count} problem{'s' if count != 1 else ''}):"]
        lines += [f"  - {err}" for err in self.errors]
        super().__init__("\n".join(lines))
