import pytest

from torchtune.data import CROSS_ENTROPY_IGNORE_IDX as IGN
from torchtune.datasets import PackedDataset, SFTDataset, instruct_dataset
from torchtune.models.llama2 import llama2_tokenizer

ROWS = [
    {"question": "What is the capital of France? ", "answer": "Paris.", "lang": "en"},
    {"question": "Count from 1 to 3. ", "answer": "1, 2, 3.", "lang": "en"},
    {"question": "Quelle est la capitale? ", "answer": "Paris.", "lang": "fr"},
]
COLUMNS = {"input": "question", "output": "answer"}


def expected(sp, row, train_on_input=False):
    """[BOS] prompt answer [EOS]; the prompt's trailing space goes with the answer's first word."""
    tokens = [1] + sp.encode(row["question"] + row["answer"]) + [2]
    n_prompt = 1 + len(sp.encode(row["question"].rstrip(" ")))
    labels = tokens if train_on_input else [IGN] * n_prompt + tokens[n_prompt:]
    return tokens, labels


def test_json_source(tokenizer, sp, write_json):
    ds = instruct_dataset(tokenizer, source="json", data_files=write_json(ROWS), column_map=COLUMNS)
    assert isinstance(ds, SFTDataset) and len(ds) == 3
    for row, item in zip(ROWS, ds):
        tokens, labels = expected(sp, row)
        assert item == {"tokens": tokens, "labels": labels}


def test_train_on_input(tokenizer, sp, write_json):
    ds = instruct_dataset(tokenizer, source="json", data_files=write_json(ROWS), column_map=COLUMNS,
                          train_on_input=True)
    assert ds[0] == dict(zip(("tokens", "labels"), expected(sp, ROWS[0], train_on_input=True)))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_sources(tokenizer, sp, tmp_path, fmt):
    from datasets import Dataset

    path = str(tmp_path / f"data.{fmt}")
    getattr(Dataset.from_list(ROWS), f"to_{fmt}")(path)
    ds = instruct_dataset(tokenizer, source=fmt, data_files=path, column_map=COLUMNS)
    assert ds[1]["tokens"] == expected(sp, ROWS[1])[0]


def test_filter_fn_and_split(tokenizer, write_json):
    path = write_json(ROWS)
    ds = instruct_dataset(tokenizer, source="json", data_files=path, column_map=COLUMNS,
                          filter_fn=lambda row: row["lang"] == "en")
    assert len(ds) == 2
    assert len(instruct_dataset(tokenizer, source="json", data_files=path, column_map=COLUMNS, split="train[:1]")) == 1


def test_new_system_prompt_is_masked(tokenizer, sp, write_json):
    ds = instruct_dataset(tokenizer, source="json", data_files=write_json(ROWS), column_map=COLUMNS,
                          new_system_prompt="Answer briefly. ")
    item = ds[0]
    assert item["tokens"] == [1] + sp.encode("Answer briefly. " + ROWS[0]["question"] + ROWS[0]["answer"]) + [2]
    assert [t for t, lb in zip(item["tokens"], item["labels"]) if lb != IGN] == \
        sp.encode(" " + ROWS[0]["answer"])[1:] + [2]


def test_missing_column_error(tokenizer, write_json):
    ds = instruct_dataset(tokenizer, source="json", data_files=write_json(ROWS), column_map={"input": "prompt"})
    with pytest.raises(KeyError, match=r"'prompt'.*expected column 'input'.*\['answer', 'lang', 'question'\]"):
        ds[0]


def test_packed(sp_path, write_json):
    tok = llama2_tokenizer(str(sp_path), max_seq_len=64, prompt_template=None)
    ds = instruct_dataset(tok, source="json", data_files=write_json(ROWS), column_map=COLUMNS, packed=True)
    assert isinstance(ds, PackedDataset)
    assert all(p["tokens"].numel() == 64 for p in ds)
    unpacked = instruct_dataset(tok, source="json", data_files=write_json(ROWS), column_map=COLUMNS)
    # Greedy packing, spelled out: samples in order, a new pack when the next one does not fit.
    packs, current = [], []
    for x in unpacked:
        if len(current) + len(x["tokens"]) > 64:
            packs.append(current)
            current = []
        current = current + x["tokens"]
    packs.append(current)
    assert [p["tokens"].tolist() for p in ds] == [p + [tok.pad_id] * (64 - len(p)) for p in packs]


def test_packed_needs_max_seq_len(tokenizer, write_json):
    with pytest.raises(ValueError, match="max_seq_len"):
        instruct_dataset(tokenizer, source="json", data_files=write_json(ROWS), column_map=COLUMNS, packed=True)


def test_split_without_name(tokenizer, write_json):
    with pytest.raises(ValueError, match="several splits"):
        SFTDataset(source="json", data_files=write_json(ROWS), split=None,
                   message_transform=lambda s: s, model_transform=tokenizer)
