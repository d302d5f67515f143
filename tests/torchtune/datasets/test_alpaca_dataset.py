from torchtune.data import CROSS_ENTROPY_IGNORE_IDX as IGN
from torchtune.datasets import alpaca_cleaned_dataset, alpaca_dataset

ROWS = [{"instruction": "Add the two numbers.", "input": "2 and 3", "output": "2 plus 3 is 5."},
        {"instruction": "What is the opposite of hot?", "input": "", "output": "Cold."}]
PROMPT_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                   "the request.\n\n### Instruction:\nWhat is the opposite of hot?\n\n### Response:\n")


def test_alpaca_trains_on_input_by_default(tokenizer, sp, write_json):
    ds = alpaca_dataset(tokenizer, source="json", data_files=write_json(ROWS))
    item = ds[1]
    assert item["tokens"] == [1] + sp.encode(PROMPT_NO_INPUT + "Cold.") + [2]
    assert item["labels"] == item["tokens"]
    assert "### Input:\n2 and 3" in sp.decode(ds[0]["tokens"])


def test_alpaca_cleaned_masks_prompt_when_asked(tokenizer, sp, write_json):
    ds = alpaca_cleaned_dataset(tokenizer, source="json", data_files=write_json(ROWS), train_on_input=False)
    item = ds[1]
    trained = [t for t, lb in zip(item["tokens"], item["labels"]) if lb != IGN]
    assert sp.decode(trained) == "Cold."
    assert item["labels"][: 1 + len(sp.encode(PROMPT_NO_INPUT))] == [IGN] * (1 + len(sp.encode(PROMPT_NO_INPUT)))


def test_alpaca_column_map(tokenizer, write_json):
    rows = [{"task": r["instruction"], "context": r["input"], "answer": r["output"]} for r in ROWS]
    ds = alpaca_dataset(tokenizer, source="json", data_files=write_json(rows),
                        column_map={"instruction": "task", "input": "context", "output": "answer"})
    reference = alpaca_dataset(tokenizer, source="json", data_files=write_json(ROWS, "ref.json"))
    assert [ds[i] for i in range(2)] == [reference[i] for i in range(2)]
