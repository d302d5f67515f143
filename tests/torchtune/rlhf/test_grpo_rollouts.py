"""GRPO rollouts and updates on a tiny decoder: log-probs against per-row forwards, micro-batch invariance."""

import copy

import pytest
import torch

from torchtune import rlhf
from torchtune.models.llama2 import llama2, lora_llama2
from torchtune.modules.peft import disable_adapter, get_adapter_params, set_trainable_params
from torchtune.rlhf.loss import GRPOLoss

DIMS = dict(vocab_size=20, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, intermediate_dim=64,
            max_seq_len=32)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _lora_model():
    torch.manual_seed(0)
    model = lora_llama2(["q_proj", "v_proj"], apply_lora_to_mlp=True, lora_rank=4, lora_alpha=8, **DIMS)
    for name, p in model.named_parameters():  # non-zero adapters, so policy and reference differ
        if "lora_b" in name:
            torch.nn.init.normal_(p, std=0.2)
    set_trainable_params(model, get_adapter_params(model))
    return model


def _rollout(model, **kw):
    prompts = [[1, 5, 6], [1, 7], [1, 8, 9, 10]]
    args = dict(group_size=2, max_generated_tokens=5, pad_id=0, stop_tokens=[2, 3], decode=lambda ids: str(len(ids)),
                reward_functions=[lambda text, answer: float(text == answer)],
                reference_context=lambda: disable_adapter(model), temperature=0.9)
    args.update(kw)
    torch.manual_seed(1)
    return rlhf.generate_rollouts(model, prompts, ["1", "2", "3"], **args)


def _row_logprobs(model, prompt, response, temperature):
    """Log-probs of ``response`` after ``prompt``, from one unpadded row alone."""
    seq = torch.tensor([prompt + response])
    logits = model(seq)[0, len(prompt) - 1:-1].float() / temperature
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(response).unsqueeze(1)).squeeze(1)


def test_rollout_logprobs_masks_and_rewards_match_per_row_computation():
    model = _lora_model()
    out = _rollout(model)
    ro = out["rollout"]
    n, r = ro.response_mask.shape
    assert n == 6 and ro.context_length == 4
    model.eval()
    with torch.no_grad():
        for i in range(n):
            tokens = ro.query_responses[i].tolist()
            prompt = [t for t in tokens[:4] if t != 0]  # left padding is id 0 here
            length = int(ro.response_mask[i].sum())
            response = tokens[4:4 + length]
            # The answer ends at its first stop token (kept) or runs to the end.
            stops = [j for j, t in enumerate(tokens[4:]) if t in (2, 3)]
            assert length == (stops[0] + 1 if stops else r)
            assert not ro.response_mask[i, length:].any()
            expected = _row_logprobs(model, prompt, response, 0.9)
            torch.testing.assert_close(ro.logprobs[i, :length], expected, atol=1e-5, rtol=1e-5)
            with disable_adapter(model):
                ref = _row_logprobs(model, prompt, response, 0.9)
            torch.testing.assert_close(ro.ref_logprobs[i, :length], ref, atol=1e-5, rtol=1e-5)
            text_len = length - (1 if stops else 0)
            assert float(ro.rewards[i]) == float(str(text_len) == ["1", "2", "3"][i // 2])
    assert not torch.allclose(ro.logprobs[ro.response_mask], ro.ref_logprobs[ro.response_mask])
    torch.testing.assert_close(ro.advantages, rlhf.group_advantages(ro.rewards, 2))
    # Decoding with or without the KV cache samples the same answers.
    no_cache = _rollout(model, enable_kv_cache=False)["rollout"]
    torch.testing.assert_close(no_cache.query_responses, ro.query_responses)
    # Generating 4 rows at a time draws other samples; their log-probs equal one whole-batch forward.
    chunked = _rollout(model, forward_batch_size=4)["rollout"]
    with torch.no_grad():
        whole = rlhf.response_logprobs(model.eval(), chunked.query_responses, chunked.masks, chunked.position_ids,
                                       chunked.context_length, 0.9)
    mask = chunked.response_mask
    torch.testing.assert_close(chunked.logprobs[mask], whole[mask], atol=1e-5, rtol=1e-5)


def test_grpo_update_is_independent_of_the_micro_batch_split():
    model = _lora_model()
    ro = _rollout(model)["rollout"]
    ro = ro._replace(advantages=torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0]))  # a signal in every group
    grads = []
    for accumulation in (1, 3):
        m = copy.deepcopy(model)
        captured = {}

        def step(m=m, captured=captured):
            captured.update({k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
            for p in m.parameters():
                p.grad = None

        stats = rlhf.grpo_update(m, GRPOLoss(kl_coeff=0.1), None, ro, gradient_accumulation_steps=accumulation,
                                 temperature=0.9, optimizer_step=step)
        assert stats["optimizer_steps"] == 1
        assert stats["ratios"] == pytest.approx(1.0)  # first pass: the rollout policy itself
        grads.append(captured)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], atol=1e-6, rtol=1e-5)


def test_grpo_update_lowers_the_loss_of_a_fixed_rollout_and_clips():
    torch.manual_seed(0)
    model = llama2(**DIMS)
    reference = copy.deepcopy(model).requires_grad_(False)
    ro = _rollout(model, reference=reference, reference_context=torch.no_grad)["rollout"]
    ro = ro._replace(advantages=torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0]))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def step():
        opt.step()
        opt.zero_grad()

    stats = rlhf.grpo_update(model, GRPOLoss(epsilon=0.05), opt, ro, ppo_epochs=4, ppo_batch_size=6,
                             temperature=0.9, optimizer_step=step)
    assert stats["optimizer_steps"] == 4
    assert stats["clipfrac"] > 0  # later passes moved ratios outside [0.95, 1.05]
    with pytest.raises(ValueError, match="evenly"):
        rlhf.grpo_update(model, GRPOLoss(), opt, ro, ppo_batch_size=4, optimizer_step=step)
