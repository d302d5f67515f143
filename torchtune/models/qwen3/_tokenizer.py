"""The Qwen3 tokenizer: Qwen2.5's format plus reasoning in ``<think>`` ... ``</think>``.

An assistant message may hold its reasoning in its content: ``"<think>\\nsteps\\n</think>\\n\\nanswer"``.
As Qwen3's chat template does, the reasoning is kept only in the messages that answer the last user
message (the turn being trained); earlier turns keep their answers only, since the model never sees
its old reasoning at inference. The final assistant message always has a think block, an empty one
(``<think>\\n\\n</think>\\n\\n``) when it has no reasoning: that is what the model writes with
thinking switched off.
"""

from typing import Dict, List, Optional, Tuple

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate, _TemplateType
from torchtune.models.qwen2._tokenizer import build_qwen_tokenizer
from torchtune.models.qwen2_5._tokenizer import QWEN2_5_SPECIAL_TOKENS, Qwen2_5Tokenizer

QWEN3_SPECIAL_TOKENS = {
    **QWEN2_5_SPECIAL_TOKENS,
    "<tool_response>": 151665,
    "</tool_response>": 151666,
    "<think>": 151667,
    "</think>": 151668,
}


def split_reasoning(content: str) -> Tuple[str, str]:
    """Split an assistant message into reasoning and answer, as Qwen3's template does.

    Args:
        content (str): e.g. ``"<think>\\nsteps\\n</think>\\n\\nanswer"``.

    Returns:
        Tuple[str, str]: the reasoning (``"steps"``; empty without ``</think>``) and the answer.
    """
    if "</think>" not in content:
        return "", content
    reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
    return reasoning, content.split("</think>")[-1].lstrip("\n")


def _last_query_index(messages: List[Message]) -> int:
    # The last user message that is not a wrapped tool answer: reasoning after it is kept.
    for i in range(len(messages) - 1, -1, -1):
        text = messages[i].text_content
        if messages[i].role == "user" and not (text.startswith("<tool_response>") and text.endswith("</tool_response>")):
            return i
    return len(messages) - 1


class Qwen3Tokenizer(Qwen2_5Tokenizer):
    """Qwen3's tokenizer: :class:`Qwen2_5Tokenizer` with Qwen3's special tokens and reasoning.

    Qwen3 has no default system prompt. See the module docstring for how reasoning is written.

    Args:
        path (str): ``vocab.json``, or a ``tokenizer.json`` (then ``merges_file`` is None).
        merges_file (str): ``merges.txt``.
        special_tokens (Dict[str, int]): special token -> id. Default Qwen3's 26 tokens.
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[PromptTemplate]): applied to the messages first. Default None.
        default_system_prompt (Optional[str]): Default None.
        enable_thinking (bool): whether a generation prompt lets the model think; False appends
            the empty ``<think>\\n\\n</think>\\n\\n`` block after ``<|im_start|>assistant\\n``, as the
            template's ``enable_thinking=False``. Default True.
        **kwargs: further :class:`Qwen2Tokenizer` arguments.
    """

    def __init__(
        self,
        path: str,
        merges_file: str,
        special_tokens: Dict[str, int] = QWEN3_SPECIAL_TOKENS,
        max_seq_len: Optional[int] = None,
        *,
        prompt_template: Optional[PromptTemplate] = None,
        default_system_prompt: Optional[str] = None,
        enable_thinking: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(
            path, merges_file, special_tokens, max_seq_len, prompt_template=prompt_template,
            default_system_prompt=default_system_prompt, **kwargs,
        )
        self.enable_thinking = enable_thinking

    def _render(self, messages: List[Message], i: int, close: bool) -> str:
        message = messages[i]
        if message.role != "assistant":
            return super()._render(messages, i, close)
        reasoning, content = ("", "") if message.ipython else split_reasoning(message.text_content)
        if i > _last_query_index(messages) and (i == len(messages) - 1 or reasoning):
            text = f"<|im_start|>assistant\n<think>\n{reasoning.strip(chr(10))}\n</think>\n\n{content.lstrip(chr(10))}"
        else:
            text = f"<|im_start|>assistant\n{content}"
        if message.ipython:
            text += f"<tool_call>\n{message.text_content}\n</tool_call>"
        return text + "<|im_end|>\n" if close else text

    def _generation_prompt(self) -> str:
        return "<|im_start|>assistant\n" + ("" if self.enable_thinking else "<think>\n\n</think>\n\n")


def qwen3_tokenizer(
    path: str,
    merges_file: str = None,
    special_tokens_path: Optional[str] = None,
    max_seq_len: Optional[int] = None,
    prompt_template: Optional[_TemplateType] = None,
    **kwargs,
) -> Qwen3Tokenizer:
    """Qwen3's tokenizer (all Qwen3 sizes share it).

    Args:
        path (str): ``vocab.json``, or a ``tokenizer.json`` (then leave ``merges_file`` None).
        merges_file (str): ``merges.txt``. Default None.
        special_tokens_path (Optional[str]): a ``tokenizer.json`` whose ``added_tokens`` give the
            special tokens. Default None (Qwen3's, or those of ``path`` when it is a ``tokenizer.json``).
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[_TemplateType]): dotted path, dict role -> ``[prefix, suffix]``,
            template instance or None. Default None.
        **kwargs: further :class:`Qwen3Tokenizer` arguments (``enable_thinking``, ...).

    Returns:
        Qwen3Tokenizer: the tokenizer.

    Raises:
        FileNotFoundError: if a file does not exist.
        ValueError: see :class:`Qwen2Tokenizer`.
    """
    return build_qwen_tokenizer(
        Qwen3Tokenizer, path, merges_file, special_tokens_path, max_seq_len, prompt_template, kwargs
    )
