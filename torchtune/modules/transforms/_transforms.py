from typing import Any, Mapping, Protocol


class Transform(Protocol):
    """A callable that maps one sample (a dict of fields) to a new sample.

    Message transforms, tokenizers and any other per-sample preprocessing of the data
    pipeline follow this protocol, so that they can be chained and swapped from a config.
    """

    def __call__(self, sample: Mapping[str, Any]) -> Mapping[str, Any]:
        ...
