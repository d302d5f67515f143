import json

import pytest
import sentencepiece as spm

from tests.test_utils.tokenizer_fixtures import train_sentencepiece
from torchtune.models.llama2 import llama2_tokenizer


@pytest.fixture(scope="session")
def sp_path(tmp_path_factory):
    return train_sentencepiece(tmp_path_factory.mktemp("sp"))


@pytest.fixture(scope="session")
def sp(sp_path):
    """The raw SentencePiece model: the independent reference for expected tokens."""
    return spm.SentencePieceProcessor(model_file=str(sp_path))


@pytest.fixture
def tokenizer(sp_path):
    """Llama2 tokenizer without a prompt template, so expected tokens are easy to spell out."""
    return llama2_tokenizer(str(sp_path), prompt_template=None)


@pytest.fixture
def write_json(tmp_path):
    def write(rows, name="data.json"):
        path = tmp_path / name
        path.write_text(json.dumps(rows))
        return str(path)
    return write
