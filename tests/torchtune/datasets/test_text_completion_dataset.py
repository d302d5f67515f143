from torchtune.datasets import PackedDataset, TextCompletionDataset, text_completion_dataset
from torchtune.models.llama2 import llama2_tokenizer

LINES = ["The quick brown fox jumps over the lazy dog.", "Paris is the capital of France.", "Hello world!"]


def test_text_files(tokenizer, sp, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(LINES) + "\n")
    ds = text_completion_dataset(tokenizer, source="text", data_files=str(path))
    assert isinstance(ds, TextCompletionDataset) and len(ds) == 3
    for line, item in zip(LINES, ds):
        assert item["tokens"] == [1] + sp.encode(line) + [2]
        assert item["labels"] == item["tokens"]
    assert text_completion_dataset(tokenizer, source="text", data_files=str(path), add_eos=False)[0]["tokens"][-1] != 2


def test_column_and_truncation(sp_path, sp, write_json):
    tok = llama2_tokenizer(str(sp_path), max_seq_len=5, prompt_template=None)
    ds = text_completion_dataset(tok, source="json", data_files=write_json([{"body": LINES[0]}]), column="body")
    assert ds[0]["tokens"] == ([1] + sp.encode(LINES[0]))[:5]  # a cut document gets no EOS


def test_packed_splits_documents(sp_path, write_json):
    tok = llama2_tokenizer(str(sp_path), max_seq_len=8, prompt_template=None)
    ds = text_completion_dataset(tok, source="json", data_files=write_json([{"text": t} for t in LINES]),
                                 packed=True)
    assert isinstance(ds, PackedDataset) and all(p["tokens"].numel() == 8 for p in ds)
