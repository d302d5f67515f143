"""The eleuther_eval recipe: built-in perplexity and exact match (its ``recipe_main`` in this process, as
``tune run`` calls it), the lm_eval request methods, and the lm_eval glue; all checked against
`transformers` on the same tiny checkpoint."""

import json
import math
import sys
import types

import pytest
import torch
from omegaconf import OmegaConf

from tests.recipes._inprocess import captured_log, run_recipe
from tests.recipes.utils import make_assets, model_overrides, RECIPE_MODEL
from torchtune.models.llama2 import llama2, llama2_tokenizer
from torchtune.training import FullModelHFCheckpointer

pytestmark = pytest.mark.integration

WINDOW = 16  # max_seq_length: short, so that documents span several windows
DOCS = ["the cat sat on a mat while the dog ran to the park and the bird sang in a tree by the river",
        "hello world", "Paris is the capital of France and Rome is the capital of Italy"]
QUESTIONS = ["the cat sat on", "bird sang in", "dog ran to", "hello"]
MAX_NEW = 6


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("eval_assets"))


@pytest.fixture(scope="module")
def hf(assets):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(assets["ckpt"])).eval()


@pytest.fixture(scope="module")
def tokenizer(assets):
    return llama2_tokenizer(str(assets["ckpt"] / "tokenizer.model"))


def _hf_logprobs(hf, ids):
    """log p(ids[i] | ids[:i]) for i >= 1, by transformers."""
    with torch.no_grad():
        logits = hf(torch.tensor([ids])).logits[0, :-1].double()
    return logits.log_softmax(-1).gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)


def _hf_greedy_answer(hf, tokenizer, prompt):
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt)), do_sample=False,
                          max_new_tokens=MAX_NEW, eos_token_id=tokenizer.stop_tokens, pad_token_id=0)
    new = [t for t in out[0, len(prompt):].tolist() if t not in tokenizer.stop_tokens]
    return tokenizer.decode(new)


def test_builtin_perplexity_and_exact_match_match_transformers(assets, hf, tokenizer, tmp_path):
    # Perplexity reference: each document after BOS, in consecutive windows of WINDOW predicted
    # tokens, each window seeing only its own tokens.
    nll, count = 0.0, 0
    for doc in DOCS:
        ids = tokenizer.encode(doc, add_bos=True, add_eos=False)
        for start in range(0, len(ids) - 1, WINDOW):
            lp = _hf_logprobs(hf, ids[start : start + WINDOW + 1])
            nll, count = nll - lp.sum().item(), count + lp.numel()
    assert count > 2 * WINDOW  # the windowing is exercised
    # Exact-match data: half the targets are the model's own greedy answers, half are wrong.
    records = []
    for i, q in enumerate(QUESTIONS):
        answer = _hf_greedy_answer(hf, tokenizer, tokenizer.encode(q, add_bos=True, add_eos=False))
        records.append({"question": q, "answer": f"  {answer} " if i % 2 == 0 else answer + " nope"})
    (tmp_path / "docs.txt").write_text("\n".join(DOCS) + "\n\n")
    (tmp_path / "qa.json").write_text(json.dumps(records))

    with captured_log() as log:
        run_recipe("eleuther_eval", "eleuther_evaluation", [
            f"output_dir={tmp_path}", *model_overrides("torchtune.models.llama2.llama2"),
            f"checkpointer.checkpoint_dir={assets['ckpt']}", "checkpointer.checkpoint_files=[model.safetensors.index.json]",
            f"tokenizer.path={assets['ckpt'] / 'tokenizer.model'}", "device=cpu", "dtype=fp32", "tasks=[]",
            f"max_seq_length={WINDOW}", "batch_size=2", f"perplexity.data_files={tmp_path / 'docs.txt'}",
            f"exact_match.data_files={tmp_path / 'qa.json'}", "exact_match.input_column=question",
            "exact_match.target_column=answer", f"exact_match.max_new_tokens={MAX_NEW}"], cwd=tmp_path)
    results = json.loads((tmp_path / "eval_results.json").read_text())
    assert results["perplexity"]["tokens"] == count and results["perplexity"]["documents"] == len(DOCS)
    assert results["perplexity"]["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert results["exact_match"] == {"exact_match": 0.5, "correct": 2, "records": 4}
    assert "perplexity: {" in log.getvalue()


@pytest.fixture(scope="module")
def scorer(assets, tokenizer, tmp_path_factory):
    from recipes.eleuther_eval import Scorer

    ckpt = FullModelHFCheckpointer(str(assets["ckpt"]), ["model.safetensors.index.json"], "LLAMA2",
                                   str(tmp_path_factory.mktemp("scorer")))
    model = llama2(**RECIPE_MODEL).eval()
    model.load_state_dict(ckpt.load_checkpoint()["model"])
    return Scorer(model, tokenizer, max_seq_length=WINDOW, batch_size=3, device=torch.device("cpu"),
                  dtype=torch.float32)


def test_loglikelihood_requests_match_transformers(scorer, hf, tokenizer):
    requests = [("The capital of France is", " Paris"), ("the cat sat on a ", "mat"), ("", "hello world"),
                ("a long context " * 6, "by the river")]  # the last one is truncated on the left
    results = scorer.loglikelihood(requests)
    for (context, continuation), (logprob, is_greedy) in zip(requests, results):
        # lm_eval's convention: trailing spaces of the context belong to the continuation.
        whole = tokenizer.encode(context + continuation, add_bos=True, add_eos=False)
        n_cont = len(whole) - len(tokenizer.encode(context.rstrip(" "), add_bos=True, add_eos=False))
        seq = whole[-(WINDOW + 1):]
        lp = _hf_logprobs(hf, seq)[-n_cont:]
        assert logprob == pytest.approx(lp.sum().item(), abs=1e-4)
        with torch.no_grad():
            argmax = hf(torch.tensor([seq])).logits[0, :-1].argmax(-1)[-n_cont:]
        assert is_greedy == bool((argmax == torch.tensor(seq[-n_cont:])).all())
    # A continuation that is the model's own greedy choice is reported as greedy.
    first = scorer.generate([tokenizer.encode("hello", add_bos=True, add_eos=False)], 1)[0]
    assert scorer.loglikelihood([("hello", first)])[0][1] is True


def test_generate_until_cuts_at_stop_strings_and_rolling_sums_windows(scorer, hf, tokenizer):
    full = _hf_greedy_answer(hf, tokenizer, tokenizer.encode("the cat sat on", add_bos=True, add_eos=False))
    marker = full[len(full) // 2 : len(full) // 2 + 1]
    out = scorer.generate_until([("the cat sat on", {"until": [marker], "max_gen_toks": MAX_NEW}),
                                 ("the cat sat on", {"until": "@@@", "max_gen_toks": MAX_NEW})])
    assert out == [full.split(marker)[0], full]
    rolling = scorer.loglikelihood_rolling(DOCS[:1])
    ids = tokenizer.encode(DOCS[0], add_bos=True, add_eos=False)
    expected = sum(_hf_logprobs(hf, ids[s : s + WINDOW + 1]).sum().item() for s in range(0, len(ids) - 1, WINDOW))
    assert rolling[0] == pytest.approx(expected, abs=1e-3)


def _fake_lm_eval(monkeypatch, seen):
    """A stand-in for the lm_eval package: its evaluate() sends one request of each kind."""
    class LM:
        pass

    class Instance:
        def __init__(self, *args):
            self.args = args

    def evaluate(lm, task_dict, limit=None):
        seen.update(tasks=task_dict, limit=limit, is_lm=isinstance(lm, LM))
        ll = lm.loglikelihood([Instance("the cat", " sat")])
        rolling = lm.loglikelihood_rolling([Instance("hello world")])
        text = lm.generate_until([Instance("the cat sat on", {"until": ["\n"], "max_gen_toks": 3})])
        return {"results": {"fake_task": {"ll": ll[0][0], "rolling": rolling[0], "text": text[0]}}}

    modules = {"lm_eval": types.ModuleType("lm_eval"), "lm_eval.api": types.ModuleType("lm_eval.api"),
               "lm_eval.api.model": types.SimpleNamespace(LM=LM),
               "lm_eval.evaluator": types.SimpleNamespace(evaluate=evaluate),
               "lm_eval.tasks": types.SimpleNamespace(
                   get_task_dict=lambda tasks, manager: {t: manager for t in tasks},
                   TaskManager=lambda include_path=None, include_defaults=True: "manager"),
               "lm_eval.utils": types.SimpleNamespace(make_table=lambda output: "| fake table |")}
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


def test_lm_eval_tasks_are_routed_through_the_scorer(scorer, monkeypatch):
    from recipes.eleuther_eval import EleutherEvalRecipe

    seen = {}
    _fake_lm_eval(monkeypatch, seen)
    cfg = OmegaConf.create({"device": "cpu", "dtype": "fp32", "seed": 0, "tasks": ["fake_task"], "limit": 3,
                            "quantizer": None})
    recipe = EleutherEvalRecipe(cfg)
    recipe._scorer = scorer
    results = recipe.evaluate_tasks()
    assert seen == {"tasks": {"fake_task": "manager"}, "limit": 3, "is_lm": True}
    assert results["fake_task"]["ll"] == scorer.loglikelihood([("the cat", " sat")])[0][0]
    assert results["fake_task"]["rolling"] == scorer.loglikelihood_rolling(["hello world"])[0]
    assert results["fake_task"]["text"] == scorer.generate_until([("the cat sat on", {"until": ["\n"],
                                                                                       "max_gen_toks": 3})])[0]


def _task_yaml(name, data_file, cache_dir, output_type, fields):
    lines = [f"task: {name}", "dataset_path: json", "dataset_kwargs:", f"  data_files: {{test: {data_file}}}",
             f"  cache_dir: {cache_dir}", "test_split: test", f"output_type: {output_type}", *fields]
    return "\n".join(lines) + "\n"


def test_real_lm_eval_custom_tasks_match_transformers(scorer, hf, tokenizer, tmp_path, monkeypatch):
    """The real harness, offline: three custom tasks over local JSON files (one per request type)
    through ``evaluate_tasks``; its metrics and the requests' answers are checked against
    transformers on the same checkpoint."""
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # in case datasets was imported before
    from recipes.eleuther_eval import EleutherEvalRecipe

    def hf_ll(context, continuation):
        whole = tokenizer.encode(context + continuation, add_bos=True, add_eos=False)
        n_cont = len(whole) - len(tokenizer.encode(context, add_bos=True, add_eos=False))
        return _hf_logprobs(hf, whole[-(WINDOW + 1):])[-n_cont:].sum().item()  # left-truncated, as documented

    # multiple_choice: the label is the transformers argmax for half the questions, another choice
    # for the rest, so the expected accuracy is 0.5.
    choices = ["a mat", "the park", "a tree by the river"]
    mc_docs = []
    for i, q in enumerate(QUESTIONS):
        lls = [hf_ll(q, " " + c) for c in choices]
        best = max(range(len(choices)), key=lls.__getitem__)
        mc_docs.append({"question": q, "choices": choices, "label": best if i % 2 == 0 else (best + 1) % 3})
    # generate_until: the target is the transformers greedy answer for half the questions.
    gen_docs = []
    for i, q in enumerate(QUESTIONS):
        answer = _hf_greedy_answer(hf, tokenizer, tokenizer.encode(q, add_bos=True, add_eos=False)).split("\n")[0]
        gen_docs.append({"question": q, "answer": answer if i % 2 == 0 else answer + " nope"})
    # loglikelihood_rolling: word perplexity over windowed documents.
    rolling_lp, words = 0.0, 0
    for doc in DOCS:
        ids = tokenizer.encode(doc, add_bos=True, add_eos=False)
        for start in range(0, len(ids) - 1, WINDOW):
            rolling_lp += _hf_logprobs(hf, ids[start : start + WINDOW + 1]).sum().item()
        words += len(doc.split())

    tasks_dir, cache = tmp_path / "tasks", tmp_path / "hf_datasets"
    tasks_dir.mkdir()
    for name, docs, output_type, fields in [
        ("tt_choice", mc_docs, "multiple_choice",
         ['doc_to_text: "{{question}}"', "doc_to_choice: choices", "doc_to_target: label",
          "metric_list: [{metric: acc}]"]),
        ("tt_generate", gen_docs, "generate_until",
         ['doc_to_text: "{{question}}"', 'doc_to_target: "{{answer}}"',
          f'generation_kwargs: {{until: ["\\n"], do_sample: false, max_gen_toks: {MAX_NEW}}}',
          "metric_list: [{metric: exact_match}]"]),
        ("tt_rolling", [{"text": d} for d in DOCS], "loglikelihood_rolling",
         ['doc_to_text: ""', 'doc_to_target: "{{text}}"', "metric_list: [{metric: word_perplexity}]"]),
    ]:
        (tmp_path / f"{name}.json").write_text(json.dumps(docs))
        (tasks_dir / f"{name}.yaml").write_text(_task_yaml(name, tmp_path / f"{name}.json", cache, output_type, fields))

    # Record what the harness asks the scorer and what it gets back.
    seen = {}
    for method in ["loglikelihood", "loglikelihood_rolling", "generate_until"]:
        def spy(requests, _method=method, _real=getattr(scorer, method)):
            seen[_method] = (list(requests), _real(requests))
            return seen[_method][1]
        monkeypatch.setattr(scorer, method, spy)

    cfg = OmegaConf.create({"device": "cpu", "dtype": "fp32", "seed": 0, "quantizer": None, "limit": None,
                            "tasks": ["tt_choice", "tt_generate", "tt_rolling"], "task_include_path": str(tasks_dir),
                            "task_include_defaults": False})
    recipe = EleutherEvalRecipe(cfg)
    recipe._scorer = scorer
    results = recipe.evaluate_tasks()

    requests, answers = seen["loglikelihood"]
    assert sorted(requests) == sorted((q, " " + c) for q in QUESTIONS for c in choices)
    for (context, continuation), (logprob, _) in zip(requests, answers):
        assert logprob == pytest.approx(hf_ll(context, continuation), abs=1e-4)
    assert results["tt_choice"]["acc,none"] == pytest.approx(0.5)
    assert sorted(seen["generate_until"][0]) == sorted(
        (q, {"until": ["\n"], "do_sample": False, "max_gen_toks": MAX_NEW}) for q in QUESTIONS)
    assert results["tt_generate"]["exact_match,none"] == pytest.approx(0.5)
    assert sorted(seen["loglikelihood_rolling"][0]) == sorted(DOCS)
    assert results["tt_rolling"]["word_perplexity,none"] == pytest.approx(math.exp(-rolling_lp / words), rel=1e-4)


def test_missing_lm_eval_and_empty_config_fail_clearly(monkeypatch):
    from recipes.eleuther_eval import EleutherEvalRecipe

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    cfg = OmegaConf.create({"device": "cpu", "dtype": "fp32", "tasks": ["truthfulqa_mc2"], "quantizer": None})
    with pytest.raises(ImportError, match=r"pip install lm_eval.*tasks=\[\]"):
        EleutherEvalRecipe(cfg)
    cfg.tasks = []
    with pytest.raises(ValueError, match="Nothing to evaluate"):
        EleutherEvalRecipe(cfg)
