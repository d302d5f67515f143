import pytest

from torchtune.data import CROSS_ENTROPY_IGNORE_IDX as IGN
from torchtune.datasets import chat_dataset

SHAREGPT = [{"dialog": [
    {"from": "system", "value": "Be brief. "},
    {"from": "human", "value": "Capital of Italy? "},
    {"from": "gpt", "value": "Rome."},
    {"from": "human", "value": "And Spain? "},
    {"from": "gpt", "value": "Madrid."},
]}]
OPENAI = [{"msgs": [{"role": m["from"].replace("human", "user").replace("gpt", "assistant"), "content": m["value"]}
                    for m in SHAREGPT[0]["dialog"]]}]


def expected(sp, train_on_input=False):
    turn1 = sp.encode("Be brief. Capital of Italy? Rome.")
    turn2 = sp.encode("And Spain? Madrid.")
    tokens = [1] + turn1 + [2, 1] + turn2 + [2]
    trained = sp.encode(" Rome.")[1:] + [2] + sp.encode(" Madrid.")[1:] + [2]
    return tokens, trained


@pytest.mark.parametrize("style, rows, column", [("sharegpt", SHAREGPT, "dialog"), ("openai", OPENAI, "msgs")])
def test_chat_styles(tokenizer, sp, write_json, style, rows, column):
    ds = chat_dataset(tokenizer, source="json", data_files=write_json(rows), conversation_column=column,
                      conversation_style=style)
    item = ds[0]
    tokens, trained = expected(sp)
    assert item["tokens"] == tokens
    assert [t for t, lb in zip(item["tokens"], item["labels"]) if lb != IGN] == trained


def test_train_on_input_keeps_system_masked(tokenizer, sp, write_json):
    ds = chat_dataset(tokenizer, source="json", data_files=write_json(SHAREGPT), conversation_column="dialog",
                      conversation_style="sharegpt", train_on_input=True)
    labels = ds[0]["labels"]
    n_system = 1 + len(sp.encode("Be brief."))
    assert labels[:n_system] == [IGN] * n_system and IGN not in labels[n_system:]


def test_bad_style(tokenizer, write_json):
    with pytest.raises(ValueError, match="conversation_style must be 'sharegpt' or 'openai'"):
        chat_dataset(tokenizer, source="json", data_files=write_json(SHAREGPT), conversation_column="dialog",
                     conversation_style="vicuna")
