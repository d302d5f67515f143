"""The Qwen2.5 tokenizer: Qwen2's, with Qwen2.5's special tokens, tool calls and default system prompt.

Tool use follows Qwen2.5's chat template: an assistant message that calls a tool
(``Message.ipython=True``, its content the call's JSON) is written as
``<|im_start|>assistant\\n<tool_call>\\n{json}\\n</tool_call><|im_end|>\\n``, and the tools' answers
(role ``ipython`` or ``tool``) as one user turn,
``<|im_start|>user\\n<tool_response>\\n{answer}\\n</tool_response>...<|im_end|>\\n``.
"""

from typing import Dict, List, Optional

from torchtune.data._messages import Message
from torchtune.data._prompt_templates import PromptTemplate, _TemplateType
from torchtune.models.qwen2._tokenizer import Qwen2Tokenizer, build_qwen_tokenizer

QWEN2_5_SPECIAL_TOKENS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647,
    "<|box_start|>": 151648,
    "<|box_end|>": 151649,
    "<|quad_start|>": 151650,
    "<|quad_end|>": 151651,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
    "<tool_call>": 151657,
    "</tool_call>": 151658,
    "<|fim_prefix|>": 151659,
    "<|fim_middle|>": 151660,
    "<|fim_suffix|>": 151661,
    "<|fim_pad|>": 151662,
    "<|repo_name|>": 151663,
    "<|file_sep|>": 151664,
}

# What Qwen2.5's chat template puts first when a conversation has no system message.
QWEN2_5_DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def _is_tool_result(message: Message) -> bool:
    return message.role in ("ipython", "tool")


class Qwen2_5Tokenizer(Qwen2Tokenizer):
    """Qwen2.5's tokenizer: :class:`Qwen2Tokenizer` with Qwen2.5's special tokens and tool format.

    A conversation without a system message starts with ``default_system_prompt`` (masked), as
    Qwen2.5's chat template does; pass ``default_system_prompt=None`` to leave it out.

    Args:
        path (str): ``vocab.json``, or a ``tokenizer.json`` (then ``merges_file`` is None).
        merges_file (str): ``merges.txt``.
        special_tokens (Dict[str, int]): special token -> id. Default Qwen2.5's 22 tokens.
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[PromptTemplate]): applied to the messages first. Default None.
        default_system_prompt (Optional[str]): Default Qwen2.5's
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        **kwargs: further :class:`Qwen2Tokenizer` arguments.

    Raises:
        FileNotFoundError: if a file does not exist.
        ValueError: if a file is malformed or a named token is missing.
    """

    def __init__(
        self,
        path: str,
        merges_file: str,
        special_tokens: Dict[str, int] = QWEN2_5_SPECIAL_TOKENS,
        max_seq_len: Optional[int] = None,
        *,
        prompt_template: Optional[PromptTemplate] = None,
        default_system_prompt: Optional[str] = QWEN2_5_DEFAULT_SYSTEM_PROMPT,
        **kwargs,
    ) -> None:
        super().__init__(
            path, merges_file, special_tokens, max_seq_len, prompt_template=prompt_template,
            default_system_prompt=default_system_prompt, **kwargs,
        )

    def _render(self, messages: List[Message], i: int, close: bool) -> str:
        message = messages[i]
        if _is_tool_result(message):
            # Consecutive tool answers share one user turn.
            first = i == 0 or not _is_tool_result(messages[i - 1])
            last = i == len(messages) - 1 or not _is_tool_result(messages[i + 1])
            text = ("<|im_start|>user" if first else "") + f"\n<tool_response>\n{message.text_content}\n</tool_response>"
            return text + "<|im_end|>\n" if close and last else text
        if message.role == "assistant" and message.ipython:
            text = f"<|im_start|>assistant\n<tool_call>\n{message.text_content}\n</tool_call>"
            return text + "<|im_end|>\n" if close else text
        return super()._render(messages, i, close)


def qwen2_5_tokenizer(
    path: str,
    merges_file: str,
    special_tokens_path: Optional[str] = None,
    max_seq_len: Optional[int] = None,
    prompt_template: Optional[_TemplateType] = None,
    **kwargs,
) -> Qwen2_5Tokenizer:
    """Qwen2.5's tokenizer (base and instruct models share it).

    Args:
        path (str): ``vocab.json``, or a ``tokenizer.json`` (then pass ``merges_file=None``).
        merges_file (str): ``merges.txt``.
        special_tokens_path (Optional[str]): a ``tokenizer.json`` whose ``added_tokens`` give the
            special tokens. Default None (Qwen2.5's, or those of ``path`` when it is a ``tokenizer.json``).
        max_seq_len (Optional[int]): truncate tokenized conversations to this length. Default None.
        prompt_template (Optional[_TemplateType]): dotted path, dict role -> ``[prefix, suffix]``,
            template instance or None. Default None.
        **kwargs: further :class:`Qwen2_5Tokenizer` arguments (``default_system_prompt``, ...).

    Returns:
        Qwen2_5Tokenizer: the tokenizer.

    Raises:
        FileNotFoundError: if a file does not exist.
        ValueError: see :class:`Qwen2Tokenizer`.
    """
    return build_qwen_tokenizer(
        Qwen2_5Tokenizer, path, merges_file, special_tokens_path, max_seq_len, prompt_template, kwargs
    )
