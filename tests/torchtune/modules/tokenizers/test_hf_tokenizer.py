import json
import re

import pytest

from tests.test_utils.tokenizer_fixtures import write_hf_tokenizer
from torchtune.modules.transforms.tokenizers import HuggingFaceBaseTokenizer

TEXTS = ["The capital of France is Paris.", "  two  spaces\nand a newline", "Ünïcödé 😀", ""]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_hf_tokenizer(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def tokenizer(files):
    return HuggingFaceBaseTokenizer(str(files[0]), tokenizer_config_json_path=str(files[1]))


@pytest.fixture(scope="module")
def reference(files):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(files[0]), bos_token="<s>", eos_token="</s>")


@pytest.mark.parametrize("text", TEXTS)
def test_encode_matches_transformers(tokenizer, reference, text):
    ids = reference(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.encode(text) == [reference.bos_token_id] + ids + [reference.eos_token_id]
    assert tokenizer.encode(text, add_bos=False, add_eos=False) == ids
    # Byte-level BPE adds no leading space, so trimming changes nothing.
    assert tokenizer.encode(text, add_bos=False, add_eos=False, trim_leading_whitespace=True) == ids


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_special_ids_from_tokenizer_config(tokenizer, reference):
    assert tokenizer.bos_id == reference.convert_tokens_to_ids("<s>")
    assert tokenizer.eos_id == reference.convert_tokens_to_ids("</s>")
    assert tokenizer.vocab_size == len(reference)


def test_special_ids_from_generation_config(files, tmp_path, tokenizer):
    gen = tmp_path / "generation_config.json"
    gen.write_text(json.dumps({"eos_token_id": [tokenizer.eos_id, 7]}))
    tok = HuggingFaceBaseTokenizer(str(files[0]), generation_config_path=str(gen))
    assert tok.bos_id is None and tok.eos_id == tokenizer.eos_id
    assert tok.encode("hi")[-1] == tokenizer.eos_id
    assert tok.encode("hi", add_eos=False) == tokenizer.encode("hi", add_bos=False, add_eos=False)


def test_needs_a_config(files):
    with pytest.raises(ValueError, match="tokenizer_config_json_path or generation_config_path"):
        HuggingFaceBaseTokenizer(str(files[0]))


def test_unknown_special_token(files, tmp_path):
    cfg = tmp_path / "tokenizer_config.json"
    cfg.write_text(json.dumps({"bos_token": "<|nope|>", "eos_token": "</s>"}))
    with pytest.raises(ValueError, match=re.escape("'<|nope|>'")):
        HuggingFaceBaseTokenizer(str(files[0]), tokenizer_config_json_path=str(cfg))


def test_missing_file(tmp_path, files):
    with pytest.raises(FileNotFoundError, match="absent.json"):
        HuggingFaceBaseTokenizer(str(tmp_path / "absent.json"), tokenizer_config_json_path=str(files[1]))


def test_trim_leading_whitespace_with_metaspace(tmp_path):
    # A sentencepiece-style tokenizer.json: Metaspace adds "▁" before the text ("first").
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from tests.test_utils.tokenizer_fixtures import tiny_corpus

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    tok.decoder = decoders.Metaspace(prepend_scheme="first")
    tok.train_from_iterator(tiny_corpus(), trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    tok.save(str(tmp_path / "tokenizer.json"))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    ours = HuggingFaceBaseTokenizer(str(tmp_path / "tokenizer.json"),
                                    tokenizer_config_json_path=str(tmp_path / "tokenizer_config.json"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    for text in ["the capital", " the capital", "What is it?"]:
        assert ours.encode(text, add_bos=False, add_eos=False, trim_leading_whitespace=True) == \
            tok.encode(text, add_special_tokens=False).ids
    assert ours.encode("the", add_bos=False, add_eos=False)[0] == ours.tokenizer.token_to_id("▁the")
