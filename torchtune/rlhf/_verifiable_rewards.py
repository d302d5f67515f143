"""Verifiable reward functions for GRPO: a completion is checked against a known answer."""

import re
from fractions import Fraction
from typing import Optional

# A number as written in an answer: optional sign, digits with optional thousands commas, an
# optional decimal part, or a fraction a/b.
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?"


def parse_number(text: str) -> Optional[Fraction]:
    """The exact value of a number written as ``42``, ``-3.5``, ``1,024`` or ``7/2``; None if not one.

    Args:
        text (str): the number, surrounding whitespace allowed.

    Returns:
        Optional[Fraction]: its exact value, or None when ``text`` is not a single number.
    """
    text = text.strip()
    if not re.fullmatch(_NUMBER, text):
        return None
    text = text.replace(",", "")
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


class ArithmeticAnswerReward:
    """Reward 1 when a completion's final answer equals the reference number exactly, else 0.

    The completion's answer is the text inside the last ``<answer>...</answer>`` tag when there
    is one, otherwise the last number in the completion; it must equal the reference exactly as
    a rational number (``"7"``, ``"7.0"`` and ``"14/2"`` all equal ``7``; ``6.99`` does not). A
    reference written GSM8K-style (worked solution, then ``#### 42``) is read after its ``####``.

    In a config::

        reward_functions:
          - _component_: torchtune.rlhf.ArithmeticAnswerReward
            format_bonus: 0.0

    Args:
        format_bonus (float): added when the completion puts an answer (right or wrong) inside
            ``<answer>`` tags; 0 scores correctness only. Default 0.0.
        require_tags (bool): only an answer inside ``<answer>`` tags counts. Default False.
    """

    def __init__(self, format_bonus: float = 0.0, require_tags: bool = False) -> None:
        self.format_bonus = format_bonus
        self.require_tags = require_tags

    @staticmethod
    def reference_value(answer: str) -> Fraction:
        """The exact value of a reference answer (the part after ``####`` when present).

        Raises:
            ValueError: naming the reference when it is not a number.
        """
        text = answer.split("####")[-1]
        value = parse_number(text)
        if value is None:
            raise ValueError(f"ArithmeticAnswerReward: the reference answer {answer!r} is not a number")
        return value

    def __call__(self, completion: str, answer: str) -> float:
        """Score one completion.

        Args:
            completion (str): the generated text (stop token removed).
            answer (str): the reference answer.

        Returns:
            float: 1.0 (+ ``format_bonus`` if tagged) for an exact answer, 0.0 (+ bonus) otherwise.

        Raises:
            ValueError: if the reference answer is not a number.
        """
        expected = self.reference_value(answer)
        tagged = re.findall(r"<answer>(.*?)</answer>", completion, flags=re.DOTALL)
        bonus = self.format_bonus if tagged else 0.0
        if tagged:
            given = parse_number(tagged[-1])
        elif self.require_tags:
            return 0.0
        else:
            numbers = re.findall(_NUMBER, completion)
            given = parse_number(numbers[-1]) if numbers else None
        return (1.0 if given is not None and given == expected else 0.0) + bonus
