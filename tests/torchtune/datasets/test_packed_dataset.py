import pytest
import torch
import torch.nn.functional as F

from torchtune.data import CROSS_ENTROPY_IGNORE_IDX as IGN, padded_collate_packed
from torchtune.datasets import PackedDataset
from torchtune.models.llama2 import llama2


def sample(tokens, labels=None):
    return {"tokens": list(tokens), "labels": list(labels if labels is not None else tokens)}


def test_greedy_packing_padding_positions_and_labels():
    ds = [sample([1, 2, 3]), sample([4, 5], [IGN, 5]), sample([6, 7, 8, 9]), sample([10])]
    packed = PackedDataset(ds, max_seq_len=6, padding_idx=0)
    assert len(packed) == 2
    first, second = packed[0], packed[1]
    assert first["tokens"].tolist() == [1, 2, 3, 4, 5, 0]
    assert first["labels"].tolist() == [IGN, 2, 3, IGN, 5, IGN]  # each document's first label ignored
    assert first["input_pos"].tolist() == [0, 1, 2, 0, 1, 0]
    assert first["seq_lens"].tolist() == [3, 2, 1]  # padding is its own document
    assert second["tokens"].tolist() == [6, 7, 8, 9, 10, 0]
    assert second["labels"].tolist() == [IGN, 7, 8, 9, IGN, IGN]
    assert second["input_pos"].tolist() == [0, 1, 2, 3, 0, 0]
    assert second["seq_lens"].tolist() == [4, 1, 1]


def test_exact_fit_has_no_padding_document():
    packed = PackedDataset([sample([1, 2]), sample([3, 4])], max_seq_len=4)
    assert len(packed) == 1 and packed[0]["seq_lens"].tolist() == [2, 2]


def test_split_across_pack():
    ds = [sample([1, 2, 3]), sample([4, 5, 6, 7, 8, 9, 10])]
    packed = PackedDataset(ds, max_seq_len=4, split_across_pack=True)
    assert [p["tokens"].tolist() for p in packed] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 0, 0]]
    assert [p["seq_lens"].tolist() for p in packed] == [[3, 1], [4], [2, 2]]
    assert packed[1]["labels"].tolist() == [IGN, 6, 7, 8]
    assert packed[2]["input_pos"].tolist() == [0, 1, 0, 1]


def test_too_long_sample_without_split():
    with pytest.raises(ValueError, match="sample 1 has 5 tokens, more than max_seq_len=4"):
        PackedDataset([sample([1]), sample([1, 2, 3, 4, 5])], max_seq_len=4)


def test_max_packs():
    ds = [sample([i] * 3) for i in range(10)]
    assert len(PackedDataset(ds, max_seq_len=4, max_packs=3)) == 3
    assert len(PackedDataset(ds, max_seq_len=7, max_packs=100)) == 5


def test_many_samples_keep_every_trained_label():
    ds = [sample(range(n % 50 + 1)) for n in range(5_000)]
    packed = PackedDataset(ds, max_seq_len=512)
    assert sum(int((p["labels"] != IGN).sum()) for p in packed) == sum(len(s["tokens"]) - 1 for s in ds)


def summed_loss(logits, labels):
    """The recipe's loss: shift labels left by one, sum token cross-entropy over trained labels."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1),
                           ignore_index=IGN, reduction="sum")


def test_packed_loss_equals_sum_of_unpacked_losses():
    torch.manual_seed(0)
    vocab, max_seq_len = 512, 64
    model = llama2(vocab_size=vocab, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64,
                   max_seq_len=max_seq_len, intermediate_dim=128).eval()
    gen = torch.Generator().manual_seed(0)
    docs = []
    for n in [9, 17, 5, 30, 12, 21, 8, 40, 3, 14]:
        tokens = [1] + torch.randint(3, vocab, (n - 1,), generator=gen).tolist()
        # Some documents train on every token (BOS label included), others mask a prompt.
        cut = 0 if len(docs) % 2 else n // 2
        docs.append(sample(tokens, [IGN] * cut + tokens[cut:]))
    packed = PackedDataset(docs, max_seq_len=max_seq_len)
    assert len(packed) < len(docs)
    batch = padded_collate_packed([packed[i] for i in range(len(packed))])
    with torch.no_grad():
        packed_loss = summed_loss(model(batch["tokens"], mask=batch["mask"], input_pos=batch["input_pos"]),
                                  batch["labels"])
        unpacked_loss = sum(
            summed_loss(model(torch.tensor([d["tokens"]])), torch.tensor([d["labels"]])) for d in docs
        )
    torch.testing.assert_close(packed_loss, unpacked_loss, rtol=1e-5, atol=1e-4)
    # Without the block-causal mask the documents would see each other and the loss would differ.
    with torch.no_grad():
        leaky = summed_loss(model(batch["tokens"], input_pos=batch["input_pos"]), batch["labels"])
    assert (leaky - unpacked_loss).abs() > 0.05
