"""Built-in default job (``make demo``): a tiny random-init Llama2 decodes with its KV cache.

It checks, on this machine, that cached decoding gives the same tokens as full forwards.
"""

import time

import torch

from torchtune.models.llama2 import llama2


def main() -> None:
    torch.manual_seed(0)
    model = llama2(vocab_size=256, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64,
                   max_seq_len=128).eval()
    prompt = torch.randint(0, 256, (1, 8))
    with torch.no_grad():
        tokens = prompt
        for _ in range(16):
            tokens = torch.cat([tokens, model(tokens)[:, -1:].argmax(-1)], dim=1)
        model.setup_caches(batch_size=1, dtype=torch.float32)
        start = time.perf_counter()
        cached = prompt
        logits = model(prompt)
        for _ in range(16):
            nxt = logits[:, -1:].argmax(-1)
            cached = torch.cat([cached, nxt], dim=1)
            logits = model(nxt)
        elapsed = time.perf_counter() - start
    print(f"prompt:    {prompt.tolist()[0]}")
    print(f"generated: {cached[0, 8:].tolist()}")
    print(f"cached decoding equals full forward: {torch.equal(tokens, cached)}")
    print(f"{16 / elapsed:.1f} tokens/s")


if __name__ == "__main__":
    main()
