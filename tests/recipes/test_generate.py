"""End-to-end runs of the generate recipe on a tiny Llama (its ``recipe_main`` in this process, as ``tune
run`` calls it; test_quantize.py runs it through the real CLI), checked against `transformers` greedy
generation on the same checkpoint."""

import pytest
import torch
from omegaconf import OmegaConf

from tests.recipes._inprocess import captured_log, run_recipe
from tests.recipes.utils import make_assets, model_overrides
from torchtune.data import Message
from torchtune.models.llama2 import llama2_tokenizer

pytestmark = pytest.mark.integration

N_NEW = 24


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return make_assets(tmp_path_factory.mktemp("generate_assets"))


def generate_args(assets, out, *extra):
    """`tune run generate` on the tiny checkpoint, on CPU in fp32 (shared with the quantize tests)."""
    return ["run", "generate", "--config", "generation", f"output_dir={out}",
            *model_overrides("torchtune.models.llama2.llama2"),
            f"checkpointer.checkpoint_dir={assets['ckpt']}",
            "checkpointer.checkpoint_files=[model.safetensors.index.json]",
            f"tokenizer.path={assets['ckpt'] / 'tokenizer.model'}", "device=cpu", "dtype=fp32", "seed=0",
            f"max_new_tokens={N_NEW}", *extra]


def hf_greedy_text(assets, prompt_tokens, n=N_NEW):
    """Prompt plus the `transformers` greedy continuation, decoded with our tokenizer."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(assets["ckpt"])).eval()
    tokenizer = llama2_tokenizer(str(assets["ckpt"] / "tokenizer.model"))
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt_tokens]), attention_mask=torch.ones(1, len(prompt_tokens)),
                          do_sample=False, max_new_tokens=n, eos_token_id=tokenizer.stop_tokens, pad_token_id=0)
    return tokenizer.decode(out[0].tolist())


def test_greedy_chat_prompt_matches_transformers_and_reports_speed(assets, tmp_path):
    args = generate_args(assets, tmp_path, "temperature=0", "prompt.system=Be brief.",
                         "prompt.user=Where does the cat sleep?")
    with captured_log() as captured:
        run_recipe("generate", "generation", args[4:], cwd=tmp_path)
    log = captured.getvalue()
    tokenizer = llama2_tokenizer(str(assets["ckpt"] / "tokenizer.model"))
    prompt, _ = tokenizer.tokenize_messages(
        [Message(role="system", content="Be brief."), Message(role="user", content="Where does the cat sleep?"),
         Message(role="assistant", content="")], add_end_tokens=False)
    expected = hf_greedy_text(assets, prompt)
    assert expected.startswith("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhere does the cat sleep? [/INST]")
    assert f"\n{expected}\n" in log
    assert "tokens/sec" in log and "Bandwidth achieved" in log and "peak memory rss" in log


def test_bad_prompt_is_rejected_with_the_expected_forms():
    import recipes.generate as recipe_module

    recipe = recipe_module.InferenceRecipe.__new__(recipe_module.InferenceRecipe)
    with pytest.raises(ValueError, match=r"prompt must be a string or a mapping \{system"):
        recipe.convert_prompt_to_tokens(OmegaConf.create({"system": "hi"}))
    with pytest.raises(ValueError, match="prompt must be"):
        recipe.convert_prompt_to_tokens(OmegaConf.create({"user": "hi", "assistant": "x"}))
