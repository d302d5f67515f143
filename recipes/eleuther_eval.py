"""Evaluate a (fine-tuned, optionally quantized) model: EleutherAI lm_eval tasks and built-in
metrics on local files.

    tune run eleuther_eval --config eleuther_evaluation

Two kinds of evaluation, either or both:

* ``tasks``: tasks of the EleutherAI evaluation harness (``pip install lm_eval``; its tasks
  download their data from the Hugging Face hub). The model is wrapped as an ``lm_eval`` ``LM``
  whose three request types are answered by the scorer below. ``task_include_path`` adds
  directories of custom task YAMLs (which may read local files); ``task_include_defaults:
  False`` skips indexing the harness's built-in tasks.
* built-in, needing neither lm_eval nor the hub:
  - ``perplexity``: exp of the mean token negative log-likelihood over local documents (a
    ``.txt`` file with one document per line, or ``.json`` / ``.jsonl`` records). Documents
    longer than ``max_seq_length`` are cut into consecutive windows; each token is scored once,
    with the context of its own window.
  - ``exact_match``: greedy generation from each record's input, compared with its target after
    stripping surrounding whitespace; reports the fraction that match.

Results are logged and written to ``<output_dir>/eval_results.json``.
"""

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from torchtune import config, generation, training, utils
from torchtune.data import Message
from torchtune.training.quantization import load_quantized_model

log = utils.get_logger("INFO")


class Scorer:
    """Scores and continues text with a decoder and its tokenizer, in batches.

    Args:
        model (torch.nn.Module): decoder returning logits ``[b, s, v]``, in eval mode, no KV caches.
        tokenizer (Any): model tokenizer with ``encode``, ``decode``, ``pad_id``, ``stop_tokens``.
        max_seq_length (int): longest sequence fed to the model.
        batch_size (int): sequences per forward.
        device (torch.device): the model's device.
        dtype (torch.dtype): KV-cache dtype for generation.
        enable_kv_cache (bool): generate with a static KV cache. Default True.
    """

    def __init__(self, model, tokenizer, *, max_seq_length: int, batch_size: int, device: torch.device,
                 dtype: torch.dtype, enable_kv_cache: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.enable_kv_cache = enable_kv_cache

    def encode(self, text: str, add_bos: bool = True) -> List[int]:
        return self.tokenizer.encode(text, add_bos=add_bos, add_eos=False)

    @torch.no_grad()
    def score(self, sequences: Sequence[Sequence[int]], starts: Sequence[int]) -> List[Tuple[float, int, bool]]:
        """Log-likelihood of ``seq[start:]`` given what precedes it, for each sequence.

        Args:
            sequences (Sequence[Sequence[int]]): token ids, each at most ``max_seq_length + 1`` long.
            starts (Sequence[int]): index (>= 1) of the first scored token of each sequence.

        Returns:
            List[Tuple[float, int, bool]]: per sequence, the summed log-probability, the number of
            scored tokens, and whether every scored token is the model's argmax.
        """
        results = []
        for i in range(0, len(sequences), self.batch_size):
            batch, batch_starts = sequences[i : i + self.batch_size], starts[i : i + self.batch_size]
            width = max(len(s) for s in batch) - 1
            inputs = torch.zeros(len(batch), width, dtype=torch.long)
            targets = torch.zeros(len(batch), width, dtype=torch.long)
            scored = torch.zeros(len(batch), width, dtype=torch.bool)
            for row, (seq, start) in enumerate(zip(batch, batch_starts)):
                # Right padding: causal attention keeps padded positions out of real ones.
                inputs[row, : len(seq) - 1] = torch.tensor(seq[:-1])
                targets[row, : len(seq) - 1] = torch.tensor(seq[1:])
                scored[row, start - 1 : len(seq) - 1] = True
            inputs, targets, scored = inputs.to(self.device), targets.to(self.device), scored.to(self.device)
            logprobs = F.log_softmax(self.model(inputs).float(), dim=-1)  # [b, s, v]
            target_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [b, s]
            greedy = (logprobs.argmax(dim=-1) == targets) | ~scored
            sums = (target_lp * scored).sum(dim=1)
            results += zip(sums.tolist(), scored.sum(dim=1).tolist(), greedy.all(dim=1).tolist())
        return results

    def loglikelihood(self, requests: Sequence[Tuple[str, str]]) -> List[Tuple[float, bool]]:
        """lm_eval ``loglikelihood``: ``(log p(continuation | context), is_greedy)`` per request."""
        sequences, starts = [], []
        for context, continuation in requests:
            # A space ending the context belongs to the continuation's first word.
            n_spaces = len(context) - len(context.rstrip(" "))
            if n_spaces:
                context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
            context_ids = self.encode(context)
            whole = self.encode(context + continuation)
            continuation_ids = whole[len(context_ids):]
            seq = whole[-(self.max_seq_length + 1):]  # keep the end: the continuation matters
            sequences.append(seq)
            starts.append(max(1, len(seq) - len(continuation_ids)))
        return [(lp, greedy) for lp, _, greedy in self.score(sequences, starts)]

    def rolling_logprobs(self, texts: Sequence[str]) -> List[Tuple[float, int]]:
        """Log-likelihood of whole documents after BOS, in windows of ``max_seq_length`` tokens.

        Returns:
            List[Tuple[float, int]]: per text, the summed log-probability and the token count.
        """
        windows, owners = [], []
        for doc, text in enumerate(texts):
            ids = self.encode(text)
            for start in range(0, len(ids) - 1, self.max_seq_length):
                windows.append(ids[start : start + self.max_seq_length + 1])
                owners.append(doc)
        totals = [[0.0, 0] for _ in texts]
        for owner, (lp, n, _) in zip(owners, self.score(windows, [1] * len(windows))):
            totals[owner][0] += lp
            totals[owner][1] += n
        return [(lp, n) for lp, n in totals]

    def loglikelihood_rolling(self, texts: Sequence[str]) -> List[float]:
        """lm_eval ``loglikelihood_rolling``: log-likelihood of each whole text."""
        return [lp for lp, _ in self.rolling_logprobs(texts)]

    @torch.no_grad()
    def generate(self, prompts: Sequence[List[int]], max_new_tokens: int, temperature: float = 0.0) -> List[str]:
        """Continue each prompt (token ids) and decode the new tokens, up to a stop token."""
        max_prompt = self.max_seq_length - max_new_tokens
        if max_prompt < 1:
            raise ValueError(f"max_new_tokens ({max_new_tokens}) must be smaller than max_seq_length "
                             f"({self.max_seq_length})")
        prompts = [p[-max_prompt:] for p in prompts]
        pad_id, stop = self.tokenizer.pad_id, set(self.tokenizer.stop_tokens)
        texts = []
        for i in range(0, len(prompts), self.batch_size):
            batch = prompts[i : i + self.batch_size]
            width = max(len(p) for p in batch)
            tokens = torch.full((len(batch), width), pad_id, dtype=torch.long)
            for row, p in enumerate(batch):  # left padding
                tokens[row, width - len(p):] = torch.tensor(p)
            # A cache sized to this batch: every decode step attends to all of its slots.
            cache = (generation.local_kv_cache(self.model, batch_size=len(batch), device=self.device,
                                               dtype=self.dtype, decoder_max_seq_len=width + max_new_tokens)
                     if self.enable_kv_cache else contextlib.nullcontext())
            with cache:
                out, _ = generation.generate(self.model, tokens.to(self.device), max_generated_tokens=max_new_tokens,
                                             pad_id=pad_id, temperature=temperature,
                                             stop_tokens=self.tokenizer.stop_tokens)
            for row in out[:, width:].tolist():
                cut = next((j for j, t in enumerate(row) if t in stop), len(row))
                texts.append(self.tokenizer.decode(row[:cut]))
        return texts

    def generate_until(self, requests: Sequence[Tuple[str, Dict[str, Any]]]) -> List[str]:
        """lm_eval ``generate_until``: continue each context, cut at the first ``until`` string.

        Requests with the same ``max_gen_toks`` and temperature are generated in batches.
        """
        groups: Dict[Tuple[int, float], List[int]] = {}
        for i, (_, kwargs) in enumerate(requests):
            temperature = kwargs.get("temperature", 0.0) if kwargs.get("do_sample", False) else 0.0
            groups.setdefault((kwargs.get("max_gen_toks", 256), temperature), []).append(i)
        outputs: List[str] = [""] * len(requests)
        for (max_gen_toks, temperature), indices in groups.items():
            texts = self.generate([self.encode(requests[i][0]) for i in indices], max_gen_toks, temperature)
            for i, text in zip(indices, texts):
                until = requests[i][1].get("until") or []
                for marker in [until] if isinstance(until, str) else until:
                    text = text.split(marker)[0]
                outputs[i] = text
        return outputs


def _read_records(path: str, key: str) -> List[Dict[str, Any]]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{key}.data_files: {file} does not exist")
    if file.suffix == ".txt":
        return [{"text": line} for line in file.read_text().splitlines() if line.strip()]
    if file.suffix == ".jsonl":
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    if file.suffix == ".json":
        records = json.loads(file.read_text())
        if isinstance(records, list):
            return records
    raise ValueError(f"{key}.data_files: expected a .txt, .jsonl or .json (list of records) file, got {file}")


def _column(records: List[Dict[str, Any]], column: str, key: str, path: str) -> List[str]:
    missing = [i for i, r in enumerate(records) if not isinstance(r, dict) or column not in r]
    if missing:
        raise KeyError(f"{key}: record {missing[0]} of {path} has no field {column!r}")
    return [str(r[column]) for r in records]


class EleutherEvalRecipe:
    """Evaluation on one device with lm_eval tasks and/or the built-in local metrics.

    Args:
        cfg (DictConfig): the recipe config (see ``recipes/configs/eleuther_evaluation.yaml``).

    Raises:
        ImportError: if ``tasks`` is not empty and ``lm_eval`` is not installed.
        ValueError: if nothing is configured to evaluate.
    """

    def __init__(self, cfg: DictConfig) -> None:
        self._device = utils.get_device(cfg.device)
        self._dtype = training.get_dtype(cfg.dtype, device=self._device, allow_fp16=True)
        self._tasks = list(cfg.get("tasks", None) or [])
        # A directory (or a list of them) of custom lm_eval task YAMLs, e.g. over local data files.
        include_path = cfg.get("task_include_path", None) or None
        if include_path is not None and not isinstance(include_path, str):
            include_path = [str(p) for p in include_path]
        self._task_include_path = include_path
        self._task_include_defaults = cfg.get("task_include_defaults", True)
        self._limit = cfg.get("limit", None)
        self._perplexity = cfg.get("perplexity", None) or {}
        self._exact_match = cfg.get("exact_match", None) or {}
        if self._tasks:
            try:
                import lm_eval  # noqa: F401
            except ImportError:
                raise ImportError(
                    f"tasks={self._tasks} needs the EleutherAI harness: pip install lm_eval. Or set tasks=[] "
                    "and use the built-in evaluations (perplexity.data_files / exact_match.data_files)"
                ) from None
        if not (self._tasks or self._perplexity.get("data_files") or self._exact_match.get("data_files")):
            raise ValueError("Nothing to evaluate: set tasks, perplexity.data_files or exact_match.data_files")
        self._quantizer = config.instantiate(cfg.get("quantizer", None))
        training.set_seed(seed=cfg.get("seed", None))

    def setup(self, cfg: DictConfig) -> None:
        """Load the checkpoint, build (and quantize) the model and the tokenizer."""
        checkpointer = config.instantiate(cfg.checkpointer)
        state_dict = checkpointer.load_checkpoint()[training.MODEL_KEY]
        source = str(cfg.checkpointer.checkpoint_dir)
        with training.set_default_dtype(self._dtype), self._device:
            model = config.instantiate(cfg.model)
        model = load_quantized_model(model, state_dict, self._quantizer, source=source)
        self._scorer = Scorer(
            model, config.instantiate(cfg.tokenizer), max_seq_length=min(cfg.max_seq_length, model.max_seq_len),
            batch_size=cfg.batch_size, device=self._device, dtype=self._dtype,
            enable_kv_cache=cfg.get("enable_kv_cache", True),
        )

    def _records(self, section: Dict[str, Any], key: str) -> List[Dict[str, Any]]:
        records = _read_records(section["data_files"], key)
        if self._limit is None:
            return records
        # As in lm_eval: a limit below 1 is a fraction of the records.
        count = int(self._limit) if self._limit >= 1 else round(len(records) * self._limit)
        return records[:count]

    def evaluate_perplexity(self) -> Dict[str, float]:
        """Perplexity over the ``perplexity.data_files`` documents."""
        path = self._perplexity["data_files"]
        texts = _column(self._records(self._perplexity, "perplexity"), self._perplexity.get("column", "text"),
                        "perplexity.column", path)
        scores = self._scorer.rolling_logprobs(texts)
        total_lp, total_tokens = sum(lp for lp, _ in scores), sum(n for _, n in scores)
        nll = -total_lp / max(total_tokens, 1)
        return {"perplexity": float(torch.tensor(nll).exp()), "nll": nll, "tokens": total_tokens,
                "documents": len(texts)}

    def evaluate_exact_match(self) -> Dict[str, float]:
        """Fraction of ``exact_match.data_files`` records whose greedy answer equals the target."""
        section, path = self._exact_match, self._exact_match["data_files"]
        records = self._records(section, "exact_match")
        inputs = _column(records, section.get("input_column", "input"), "exact_match.input_column", path)
        targets = _column(records, section.get("target_column", "output"), "exact_match.target_column", path)
        tokenizer = self._scorer.tokenizer
        if section.get("chat_format", False):
            prompts = [tokenizer({"messages": [Message(role="user", content=x), Message(role="assistant", content="")]},
                                 inference=True)["tokens"] for x in inputs]
        else:
            prompts = [self._scorer.encode(x) for x in inputs]
        answers = self._scorer.generate(prompts, section.get("max_new_tokens", 32))
        correct = sum(a.strip() == t.strip() for a, t in zip(answers, targets))
        return {"exact_match": correct / max(len(records), 1), "correct": correct, "records": len(records)}

    def evaluate_tasks(self) -> Dict[str, Any]:
        """Run the lm_eval tasks and log the harness's table."""
        from lm_eval.api.model import LM
        from lm_eval.evaluator import evaluate
        from lm_eval.tasks import get_task_dict, TaskManager
        from lm_eval.utils import make_table

        scorer = self._scorer

        class _TuneLM(LM):
            def loglikelihood(self, requests):
                return scorer.loglikelihood([r.args for r in requests])

            def loglikelihood_rolling(self, requests):
                return scorer.loglikelihood_rolling([r.args[0] for r in requests])

            def generate_until(self, requests):
                return scorer.generate_until([r.args for r in requests])

        # Indexing lm_eval's built-in tasks takes seconds; task_include_defaults=False skips it when
        # every task comes from task_include_path.
        manager = TaskManager(include_path=self._task_include_path, include_defaults=self._task_include_defaults)
        output = evaluate(_TuneLM(), get_task_dict(self._tasks, manager), limit=self._limit)
        log.info(f"lm_eval results:\n{make_table(output)}")
        return output["results"]

    def evaluate(self, cfg: DictConfig) -> Dict[str, Any]:
        """Run every configured evaluation, log the results and write them as JSON.

        Returns:
            Dict[str, Any]: results keyed ``perplexity``, ``exact_match`` and ``lm_eval``.
        """
        results: Dict[str, Any] = {}
        for name, enabled, run in [("perplexity", self._perplexity.get("data_files"), self.evaluate_perplexity),
                                   ("exact_match", self._exact_match.get("data_files"), self.evaluate_exact_match),
                                   ("lm_eval", self._tasks, self.evaluate_tasks)]:
            if not enabled:
                continue
            t0 = time.perf_counter()
            results[name] = run()
            log.info(f"{name}: {json.dumps(results[name]) if name != 'lm_eval' else 'done'} "
                     f"({time.perf_counter() - t0:.1f} s)")
        output_dir = cfg.get("output_dir", None)
        if output_dir:
            path = Path(output_dir) / "eval_results.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=2, default=str) + "\n")
            log.info(f"Wrote {path}")
        return results


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point: ``tune run eleuther_eval --config eleuther_evaluation [key=value ...]``."""
    config.log_config(recipe_name="EleutherEvalRecipe", cfg=cfg)
    recipe = EleutherEvalRecipe(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.evaluate(cfg=cfg)


if __name__ == "__main__":
    sys.exit(recipe_main())
