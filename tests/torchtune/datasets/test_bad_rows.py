"""Bad data, row by row: every dataset row is checked as it is read (file, row index and column in
a one-line error), ``bad_rows="skip"`` leaves bad rows out with a count, and a seeded fuzz of null,
missing and wrong-type fields, empty files, non-UTF-8 bytes and very long rows never ends in
anything but such an error."""

import json
import logging
import random

import pytest

from torchtune._errors import anticipated_error_types, DataError
from torchtune.datasets import alpaca_dataset, chat_dataset

GOOD = {"instruction": "Reverse the words.", "input": "cat sat", "output": "sat cat"}


def _rows(n=8):
    return [dict(GOOD, input=f"cat {i}") for i in range(n)]


def test_a_null_instruction_names_file_row_and_column(tokenizer, write_json):
    rows = _rows()
    rows[5]["instruction"] = None
    path = write_json(rows)
    ds = alpaca_dataset(tokenizer, source="json", data_files=path, split="train")
    ds[4]  # good rows still load
    with pytest.raises(DataError) as err:
        ds[5]
    assert str(err.value).startswith(f"{path} row 5: column 'instruction' is null (expected str)")
    assert "\n" not in str(err.value)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_bad_rows_skip_leaves_them_out_and_warns_with_the_count(tokenizer, write_json):
    rows = _rows(10)
    for i in (2, 7):
        del rows[i]["output"]
    rows[4]["instruction"] = 3
    path = write_json(rows)
    handler = _Collect()  # the package logger may not propagate to pytest's capture
    logging.getLogger("torchtune").addHandler(handler)
    try:
        ds = alpaca_dataset(tokenizer, source="json", data_files=path, split="train", bad_rows="skip")
    finally:
        logging.getLogger("torchtune").removeHandler(handler)
    assert len(ds) == 7
    kept_inputs = [tokenizer.decode(ds[i]["tokens"]) for i in range(len(ds))]
    assert all(f"cat {i}" in text for i, text in zip([0, 1, 3, 5, 6, 8, 9], kept_inputs))
    assert any(m.startswith(f"{path}: skipped 3 of 10 rows (bad_rows=skip): rows 2, 4, 7") for m in handler.messages)


def test_bad_rows_takes_raise_or_skip(tokenizer, write_json):
    with pytest.raises(DataError, match="bad_rows must be 'raise' or 'skip'"):
        alpaca_dataset(tokenizer, source="json", data_files=write_json(_rows()), split="train", bad_rows="ignore")


def _fuzz_file(rng, tmp_path, i):
    kind = rng.choice(["null", "missing", "wrong_type", "empty_file", "non_utf8", "long_row", "empty_list",
                       "not_json"])
    path = tmp_path / f"fuzz_{i}.json"
    rows = _rows(6)
    row, column = rng.randrange(6), rng.choice(["instruction", "input", "output"])
    if kind == "null":
        rows[row][column] = None
    elif kind == "missing":
        for r in rows[row:]:  # from this row on, so that the column is absent, not null-filled
            r.pop(column)
    elif kind == "wrong_type":
        value = rng.choice([3, 1.5, True, ["a"], {"x": 1}])
        for r in rows:  # every row, so the JSON loader keeps one type per column
            r[column] = value
    elif kind == "long_row":
        rows[row][column] = " ".join(["cat"] * 20000)
    if kind == "empty_file":
        path.write_text("")
    elif kind == "empty_list":
        path.write_text("[]")
    elif kind == "non_utf8":
        path.write_bytes(json.dumps(rows).encode()[:40] + b"\xff\xfe\xc3(" + json.dumps(rows).encode()[40:])
    elif kind == "not_json":
        path.write_text("{this is not json")
    else:
        path.write_text(json.dumps(rows))
    return kind, str(path)


def test_fuzz_bad_data_fails_with_a_one_line_error_naming_the_file(tokenizer, tmp_path):
    rng = random.Random(0)
    kinds = set()
    for i in range(24):
        kind, path = _fuzz_file(rng, tmp_path, i)
        kinds.add(kind)
        try:
            ds = alpaca_dataset(tokenizer, source="json", data_files=path, split="train")
            for j in range(len(ds)):
                sample = ds[j]
                assert len(sample["tokens"]) <= tokenizer.max_seq_len if tokenizer.max_seq_len else True
        except anticipated_error_types() as err:
            message = str(err)
            assert path in message and "\n" not in message.strip(), (kind, message)
        except Exception as err:  # noqa: BLE001 - the point of the test
            raise AssertionError(f"{kind} ({path}) raised {type(err).__name__}: {err}") from err
    assert len(kinds) >= 6, kinds


def test_a_chat_row_with_a_null_conversation_is_named(tokenizer, write_json):
    path = write_json([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
                       {"conversations": None}])
    ds = chat_dataset(tokenizer, source="json", data_files=path, conversation_column="conversations",
                      conversation_style="sharegpt", split="train")
    with pytest.raises(DataError, match=r"row 1: column 'conversations' is null \(expected list\)"):
        ds[1]
