import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from tests.test_utils.tokenizer_fixtures import train_sentencepiece
from torchtune.modules.transforms.tokenizers import SentencePieceBaseTokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces and trailing  ",
    "Ünïcödé, emoji 😀 and 中文 fall back to bytes",
    "line one\nline two\n\n\ttabbed",
    "[INST] What is 12 plus 30? [/INST] 42",
    "",
]


@pytest.fixture(scope="module")
def sp_path(tmp_path_factory):
    return train_sentencepiece(tmp_path_factory.mktemp("sp"))


@pytest.fixture(scope="module")
def tokenizer(sp_path):
    return SentencePieceBaseTokenizer(str(sp_path))


@pytest.fixture(scope="module")
def reference(sp_path):
    return spm.SentencePieceProcessor(model_file=str(sp_path))


@pytest.fixture(scope="module")
def reference_no_dummy_prefix(sp_path):
    # The same model with the dummy-prefix space switched off in its normalizer spec.
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(sp_path.read_bytes())
    proto.normalizer_spec.add_dummy_prefix = False
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


@pytest.mark.parametrize("text", TEXTS)
def test_encode_matches_sentencepiece(tokenizer, reference, text):
    assert tokenizer.encode(text) == [1] + reference.encode(text) + [2]
    assert tokenizer.encode(text, add_bos=False, add_eos=False) == reference.encode(text)


def test_special_ids(tokenizer, reference):
    assert (tokenizer.bos_id, tokenizer.eos_id) == (1, 2)
    assert tokenizer.vocab_size == reference.vocab_size() == 512
    assert tokenizer.pad_id == 0  # the model defines no pad piece


@pytest.mark.parametrize("text", [t for t in TEXTS if t])
def test_trim_leading_whitespace_drops_dummy_prefix(tokenizer, reference_no_dummy_prefix, text):
    ids = tokenizer.encode(text, add_bos=False, add_eos=False, trim_leading_whitespace=True)
    assert ids == reference_no_dummy_prefix.encode(text)


def test_decode_accepts_tensor(tokenizer):
    import torch

    ids = tokenizer.encode("hello world")
    assert tokenizer.decode(torch.tensor(ids)) == "hello world"


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.model"):
        SentencePieceBaseTokenizer(str(tmp_path / "nope.model"))


def test_not_a_sentencepiece_model(tmp_path):
    bad = tmp_path / "tokenizer.model"
    bad.write_text("definitely not a protobuf")
    with pytest.raises(ValueError, match="tokenizer.model is not a valid SentencePiece model"):
        SentencePieceBaseTokenizer(str(bad))
