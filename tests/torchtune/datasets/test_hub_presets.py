import pytest
"""The Hub presets, pointed at local files in the same layout."""

from torchtune.data import CROSS_ENTROPY_IGNORE_IDX as IGN
from torchtune.datasets import (
    cnn_dailymail_articles_dataset,
    grammar_dataset,
    hh_rlhf_helpful_dataset,
    samsum_dataset,
    slimorca_dataset,
    stack_exchange_paired_dataset,
    wikitext_dataset,
)


def trained_text(sp, item, tokens="tokens", labels="labels"):
    return sp.decode([t for t, lb in zip(item[tokens], item[labels]) if lb != IGN])


def test_sft_presets(tokenizer, sp, write_json):
    conv = [{"conversations": [{"from": "human", "value": "hi "}, {"from": "gpt", "value": "hello"}]}]
    assert trained_text(sp, slimorca_dataset(tokenizer, source="json", data_files=write_json(conv))[0]) == "hello"
    dialogue = [{"dialogue": "A: hi\nB: hello", "summary": "They greet."}]
    assert trained_text(sp, samsum_dataset(tokenizer, source="json", data_files=write_json(dialogue))[0]) \
        == "They greet."
    grammar = [{"input": "he go home", "output": "He goes home."}]
    assert trained_text(sp, grammar_dataset(tokenizer, source="json", data_files=write_json(grammar))[0]) \
        == "He goes home."


def test_text_presets(tokenizer, sp, write_json):
    page = write_json([{"page": "A wiki page."}])
    assert wikitext_dataset(tokenizer, source="json", subset=None, data_files=page)[0]["tokens"] \
        == [1] + sp.encode("A wiki page.") + [2]
    article = write_json([{"article": "News today."}], "news.json")
    assert cnn_dailymail_articles_dataset(tokenizer, source="json", data_files=article)[0]["tokens"] \
        == [1] + sp.encode("News today.") + [2]
    # max_seq_len truncates each document (a cut document gets no EOS).
    assert wikitext_dataset(tokenizer, source="json", subset=None, max_seq_len=3, data_files=page)[0]["tokens"] \
        == ([1] + sp.encode("A wiki page."))[:3]
    assert cnn_dailymail_articles_dataset(tokenizer, "json", 2, data_files=article)[0]["tokens"] \
        == ([1] + sp.encode("News today."))[:2]


def test_slimorca_column_map_names_the_conversation_column(tokenizer, sp, write_json):
    conv = [{"dialog": [{"from": "human", "value": "hi "}, {"from": "gpt", "value": "hello"}]}]
    ds = slimorca_dataset(tokenizer, source="json", column_map={"conversations": "dialog"}, data_files=write_json(conv))
    assert trained_text(sp, ds[0]) == "hello"
    with pytest.raises(ValueError, match="only maps 'conversations'"):
        slimorca_dataset(tokenizer, source="json", column_map={"messages": "dialog"}, data_files=write_json(conv))


def test_preference_presets(tokenizer, sp, write_json):
    rows = [{"question": "2+2? ", "response_j": "4", "response_k": "5"}]
    item = stack_exchange_paired_dataset(tokenizer, source="json", data_files=write_json(rows))[0]
    assert trained_text(sp, item, "chosen_input_ids", "chosen_labels") == "4"
    assert trained_text(sp, item, "rejected_input_ids", "rejected_labels") == "5"
    conv = [{"chosen": [{"role": "user", "content": "q "}, {"role": "assistant", "content": "good"}],
             "rejected": [{"role": "user", "content": "q "}, {"role": "assistant", "content": "bad"}]}]
    item = hh_rlhf_helpful_dataset(tokenizer, source="json", data_files=write_json(conv, "hh.json"))[0]
    assert trained_text(sp, item, "rejected_input_ids", "rejected_labels") == "bad"


def test_stack_exchange_paired_reads_the_rl_folder_of_the_hub_dataset(tokenizer, monkeypatch):
    import torchtune.datasets._load as load

    seen = []

    def fake_load(source, **kwargs):
        seen.append((source, kwargs.get("data_dir"), kwargs.get("split")))
        raise StopIteration  # the arguments are all this test needs

    monkeypatch.setattr(load, "load_hf_dataset", fake_load)
    for kwargs in ({}, {"data_dir": "data/reward"}, {"source": "json", "data_files": "x.json"}):
        with pytest.raises(StopIteration):
            stack_exchange_paired_dataset(tokenizer, **kwargs)
    assert seen == [("lvwerra/stack-exchange-paired", "data/rl", "train"),
                    ("lvwerra/stack-exchange-paired", "data/reward", "train"), ("json", None, "train")]
