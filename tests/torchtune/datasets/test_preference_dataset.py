import pytest

from torchtune.data import CROSS_ENTROPY_IGNORE_IDX as IGN, padded_collate_dpo
from torchtune.datasets import preference_dataset

ROWS = [{
    "chosen": [{"role": "user", "content": "Capital of France? "}, {"role": "assistant", "content": "Paris."}],
    "rejected": [{"role": "user", "content": "Capital of France? "}, {"role": "assistant", "content": "Rome!"}],
}]


def test_preference_items(tokenizer, sp, write_json):
    ds = preference_dataset(tokenizer, source="json", data_files=write_json(ROWS))
    item = ds[0]
    assert set(item) == {"chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"}
    n_prompt = 1 + len(sp.encode("Capital of France?"))
    for key, answer in (("chosen", "Paris."), ("rejected", "Rome!")):
        assert item[f"{key}_input_ids"] == [1] + sp.encode("Capital of France? " + answer) + [2]
        assert item[f"{key}_labels"] == [IGN] * n_prompt + item[f"{key}_input_ids"][n_prompt:]
    ids, labels = padded_collate_dpo([item])
    assert ids.shape[0] == 2 and labels.shape == ids.shape


def test_column_map_and_packed_error(tokenizer, write_json):
    rows = [{"good": r["chosen"], "bad": r["rejected"]} for r in ROWS]
    ds = preference_dataset(tokenizer, source="json", data_files=write_json(rows),
                            column_map={"chosen": "good", "rejected": "bad"})
    assert len(ds[0]["chosen_input_ids"]) > 0
    with pytest.raises(ValueError, match="Packing is not supported for preference datasets"):
        preference_dataset(tokenizer, source="json", data_files=write_json(ROWS), packed=True)
