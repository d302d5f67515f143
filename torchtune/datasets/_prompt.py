"""Prompt-only data for online RL (GRPO): each row is a question and its reference answer."""

from typing import Any, Callable, Dict, Mapping, Optional

from torchtune.data import Message
from torchtune.data._utils import get_column
from torchtune.datasets._load import HFRowDataset
from torchtune.modules.transforms.tokenizers import ModelTokenizer


class PromptDataset(HFRowDataset):
    """Prompts to sample answers to, with the reference answer a reward function checks.

    Each item is ``{"tokens": prompt ids, "answer": reference answer (str)}``. The prompt is
    ``template.format(prompt=row[column])``; with ``apply_chat_template`` it becomes the user turn
    of a conversation (after an optional system turn) tokenized as a generation prompt, so the
    model answers as the assistant; otherwise it is encoded as plain text after BOS.

    Args:
        tokenizer (ModelTokenizer): the model tokenizer (``encode``; a message transform for chat).
        source (str): ``datasets.load_dataset`` source.
        column (str): the prompt column. Default ``"prompt"``.
        answer_column (str): the reference-answer column. Default ``"answer"``.
        template (str): format string with ``{prompt}``. Default ``"{prompt}"``.
        system_prompt (Optional[str]): a system turn before the prompt (chat only). Default None.
        apply_chat_template (bool): tokenize as a conversation with the tokenizer's chat format.
            Default False.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        **load_dataset_kwargs: passed to ``load_dataset`` (``split``, ``data_files``, ``name``, ...).

    Raises:
        ValueError: if ``template`` has no ``{prompt}`` field.
    """

    def __init__(
        self,
        tokenizer: ModelTokenizer,
        source: str,
        column: str = "prompt",
        answer_column: str = "answer",
        template: str = "{prompt}",
        system_prompt: Optional[str] = None,
        apply_chat_template: bool = False,
        filter_fn: Optional[Callable] = None,
        **load_dataset_kwargs: Any,
    ) -> None:
        if "{prompt}" not in template:
            raise ValueError(f"prompt_dataset: template must contain '{{prompt}}', got {template!r}")
        self._tokenizer = tokenizer
        self._column = column
        self._answer_column = answer_column
        self._template = template
        self._system_prompt = system_prompt
        self._apply_chat_template = apply_chat_template
        super().__init__(source, filter_fn=filter_fn, **load_dataset_kwargs)

    def _prepare_sample(self, sample: Mapping[str, Any]) -> Dict[str, Any]:
        prompt = self._template.format(prompt=get_column(sample, self._column, "column"))
        answer = str(get_column(sample, self._answer_column, "answer_column"))
        if not self._apply_chat_template:
            return {"tokens": self._tokenizer.encode(prompt, add_bos=True, add_eos=False), "answer": answer}
        messages = [] if self._system_prompt is None else [Message(role="system", content=self._system_prompt)]
        messages += [Message(role="user", content=prompt), Message(role="assistant", content="")]
        tokens = self._tokenizer({"messages": messages}, inference=True)["tokens"]
        return {"tokens": list(tokens), "answer": answer}


def prompt_dataset(
    tokenizer: ModelTokenizer,
    source: str,
    column: str = "prompt",
    answer_column: str = "answer",
    template: str = "{prompt}",
    system_prompt: Optional[str] = None,
    apply_chat_template: bool = False,
    split: str = "train",
    filter_fn: Optional[Callable] = None,
    **load_dataset_kwargs: Any,
) -> PromptDataset:
    """Prompt-only data for GRPO from any source, e.g. a local JSON-lines file::

        dataset:
          _component_: torchtune.datasets.prompt_dataset
          source: json
          data_files: data/arithmetic.jsonl   # {"prompt": "3+4=", "answer": "7"} per line

    Args: as :class:`PromptDataset`, plus ``split`` (default ``"train"``).

    Returns:
        PromptDataset: the dataset.
    """
    return PromptDataset(
        tokenizer, source=source, column=column, answer_column=answer_column, template=template,
        system_prompt=system_prompt, apply_chat_template=apply_chat_template, filter_fn=filter_fn,
        split=split, **load_dataset_kwargs,
    )


_GSM8K_TEMPLATE = (
    "Solve the problem. Think step by step, then give the final number inside <answer></answer> tags.\n"
    "Problem: {prompt}"
)


def gsm8k_prompt_dataset(
    tokenizer: ModelTokenizer,
    source: str = "openai/gsm8k",
    name: str = "main",
    split: str = "train",
    apply_chat_template: bool = True,
    filter_fn: Optional[Callable] = None,
    **load_dataset_kwargs: Any,
) -> PromptDataset:
    """GSM8K grade-school arithmetic questions as GRPO prompts; answers end in ``#### <number>``.

    Pair with ``torchtune.rlhf.ArithmeticAnswerReward``, which reads the reference after ``####``
    and the model's answer inside ``<answer>`` tags (or its last number).

    Args:
        tokenizer (ModelTokenizer): the model tokenizer.
        source (str): ``load_dataset`` source. Default ``"openai/gsm8k"``.
        name (str): the dataset config. Default ``"main"``.
        split (str): split to load. Default ``"train"``.
        apply_chat_template (bool): ask as a user turn in the model's chat format. Default True.
        filter_fn (Optional[Callable]): keep only rows for which it returns True. Default None.
        **load_dataset_kwargs: passed to ``load_dataset``.

    Returns:
        PromptDataset: the dataset.
    """
    return PromptDataset(
        tokenizer, source=source, column="question", answer_column="answer", template=_GSM8K_TEMPLATE,
        apply_chat_template=apply_chat_template, filter_fn=filter_fn, name=name, split=split,
        **load_dataset_kwargs,
    )
