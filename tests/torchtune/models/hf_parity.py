"""Shared steps of the family parity tests: a random-init `transformers` model saved with
``save_pretrained``, loaded and saved again through our ``FullModelHFCheckpointer``."""

from pathlib import Path
from typing import Dict, Tuple

import torch
from safetensors.torch import load_file

from torchtune.modules import delete_kv_caches
from torchtune.training import MODEL_KEY, FullModelHFCheckpointer


def widen_init(model: torch.nn.Module, seed: int = 0, std: float = 0.08) -> torch.nn.Module:
    """Redraw every matrix with a wider std than HF's 0.02, so logits differ between tokens."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, std)
    return model.eval()


def load_through_checkpointer(folder: Path, model_type: str, output_dir: Path) -> Tuple[FullModelHFCheckpointer, Dict]:
    """Our checkpointer on a ``save_pretrained`` folder; returns it and the torchtune state dict."""
    ckpt = FullModelHFCheckpointer(str(folder), ["model.safetensors"], model_type, str(output_dir))
    return ckpt, ckpt.load_checkpoint()[MODEL_KEY]


def save_through_checkpointer(folder: Path, model_type: str, sd: Dict, output_dir: Path) -> Path:
    """Save ``sd`` (torchtune layout) with our checkpointer next to ``folder``'s config; the epoch folder."""
    FullModelHFCheckpointer(str(folder), ["model.safetensors"], model_type, str(output_dir)).save_checkpoint(
        {MODEL_KEY: sd}, epoch=0
    )
    return output_dir / "epoch_0"


def saved_hf_state_dict(epoch_dir: Path) -> Dict[str, torch.Tensor]:
    """Every tensor of the safetensors shards our checkpointer wrote."""
    sd: Dict[str, torch.Tensor] = {}
    for shard in sorted(epoch_dir.glob("*.safetensors")):
        sd.update(load_file(str(shard)))
    return sd


def decode_step_by_step(model: torch.nn.Module, tokens: torch.Tensor, prefill: int) -> torch.Tensor:
    """Logits ``[b, s, v]`` from a prefill of ``prefill`` tokens and then one token at a time."""
    model.setup_caches(batch_size=tokens.shape[0], dtype=torch.float32, decoder_max_seq_len=tokens.shape[1] + 4)
    try:
        steps = [model(tokens[:, :prefill])]
        steps += [model(tokens[:, i:i + 1]) for i in range(prefill, tokens.shape[1])]
    finally:
        delete_kv_caches(model)
    return torch.cat(steps, dim=1)


def padded_batch(vocab_size: int, lengths, pad_id: int = 0, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids ``[b, max(lengths)]`` with no ``pad_id`` inside, and the lengths ``[b]``."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.full((len(lengths), max(lengths)), pad_id)
    for row, n in enumerate(lengths):
        tokens[row, :n] = torch.randint(pad_id + 1, vocab_size, (n,), generator=gen)
    return tokens, torch.tensor(lengths)


def check_sequence_classifier(hf_cls, hf_config, build_ours, folder: Path, out: Path) -> float:
    """A ``*ForSequenceClassification`` and our classifier: per-token and pooled scores, strict round trip.

    transformers scores each sequence at its last non-pad token; ours scores every position, so the
    pooled comparison reads our output at ``length - 1``. Returns the largest absolute difference.
    """
    hf = widen_init(hf_cls(hf_config), seed=0)
    hf.save_pretrained(str(folder))
    _, sd = load_through_checkpointer(folder, "REWARD", out / "load")
    assert sd["output.weight"].shape == (hf_config.num_labels, hf_config.hidden_size)
    ours = build_ours().eval()
    ours.load_state_dict(sd, strict=True)
    tokens, lengths = padded_batch(hf_config.vocab_size, [20, 13, 5], pad_id=hf_config.pad_token_id)
    with torch.no_grad():
        per_token = ours(tokens)  # [b, s, num_classes]
        pooled = per_token[torch.arange(len(lengths)), lengths - 1]
        expected = hf(tokens).logits  # [b, num_classes]
        expected_per_token = hf.score(hf.model(input_ids=tokens).last_hidden_state)
        torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(per_token, expected_per_token, atol=1e-5, rtol=1e-5)

        epoch_dir = save_through_checkpointer(folder, "REWARD", ours.state_dict(), out / "save")
        saved = saved_hf_state_dict(epoch_dir)
        assert "score.weight" in saved and "lm_head.weight" not in saved
        fresh = hf_cls(hf_config).eval()
        fresh.load_state_dict(saved, strict=True)
        torch.testing.assert_close(fresh(tokens).logits, expected, atol=1e-5, rtol=1e-5)
        reloaded = hf_cls.from_pretrained(str(epoch_dir)).eval()
        torch.testing.assert_close(reloaded(tokens).logits, expected, atol=1e-5, rtol=1e-5)
    return (pooled - expected).abs().max().item()
