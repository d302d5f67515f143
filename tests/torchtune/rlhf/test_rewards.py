"""PPO reward maths against element-by-element reference computations written here."""

import math

import pytest
import torch

from torchtune import rlhf


def _ref_masked_mean(x, m):
    vals = [float(a) for a, k in zip(x.flatten(), m.flatten()) if k]
    return sum(vals) / len(vals)


def _ref_whiten(x, m):
    vals = [float(a) for a, k in zip(x.flatten(), m.flatten()) if k]
    mu = sum(vals) / len(vals)
    var = sum((v - mu) ** 2 for v in vals) / (len(vals) - 1)
    return (x.double() - mu) / math.sqrt(var + 1e-8)


def test_masked_mean_var_and_whiten():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, generator=g, dtype=torch.float64)
    m = torch.rand(3, 7, generator=g) > 0.3
    assert float(rlhf.masked_mean(x, m)) == pytest.approx(_ref_masked_mean(x, m), rel=1e-7)
    per_row = rlhf.masked_mean(x, m, dim=1)
    for i in range(3):
        assert float(per_row[i]) == pytest.approx(_ref_masked_mean(x[i], m[i]), rel=1e-7)
    mu = _ref_masked_mean(x, m)
    vals = [float(a) for a, k in zip(x.flatten(), m.flatten()) if k]
    ref_var = sum((v - mu) ** 2 for v in vals) / (len(vals) - 1)
    assert float(rlhf.masked_var(x - mu, m)) == pytest.approx(ref_var, rel=1e-7)
    assert float(rlhf.masked_var(x - mu, m, unbiased=False)) == pytest.approx(ref_var * (len(vals) - 1) / len(vals),
                                                                              rel=1e-7)
    torch.testing.assert_close(rlhf.whiten(x, m), _ref_whiten(x, m), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(rlhf.whiten(x, m, shift_mean=False), _ref_whiten(x, m) + mu, atol=1e-6, rtol=1e-6)
    full = torch.ones_like(m)
    torch.testing.assert_close(rlhf.whiten(x), _ref_whiten(x, full), atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        rlhf.masked_var(x, torch.zeros_like(m))


def test_get_reward_penalty_mask():
    padding = torch.tensor([[False, False, True], [False, False, False], [False, True, True]])
    seq_lens = torch.tensor([2, 3, 1])
    # Row 1 never stopped (no padding); row 2 is shorter than 2 tokens.
    assert rlhf.get_reward_penalty_mask(padding, seq_lens).tolist() == [False, True, False]
    assert rlhf.get_reward_penalty_mask(padding, seq_lens, min_response_length=2).tolist() == [False, True, True]
    assert rlhf.get_reward_penalty_mask(padding, seq_lens, penalise_no_eos=False).tolist() == [False, False, False]


def test_get_rewards_ppo():
    g = torch.Generator().manual_seed(1)
    lp, ref = torch.randn(2, 4, generator=g), torch.randn(2, 4, generator=g)
    scores = torch.tensor([1.5, -2.0])
    total, kl, kl_rewards = rlhf.get_rewards_ppo(scores, lp, ref, 0.1, valid_score_idxs=torch.tensor([1, 3]))
    for i in range(2):
        for t in range(4):
            expected_kl = float(lp[i, t] - ref[i, t])
            assert float(kl[i, t]) == pytest.approx(expected_kl, abs=1e-6)
            assert float(kl_rewards[i, t]) == pytest.approx(-0.1 * expected_kl, abs=1e-6)
            bonus = float(scores[i]) if t == [1, 3][i] else 0.0
            assert float(total[i, t]) == pytest.approx(-0.1 * expected_kl + bonus, abs=1e-6)
    last, _, _ = rlhf.get_rewards_ppo(scores, lp, ref, 0.1)
    assert float(last[0, 3]) == pytest.approx(float(-0.1 * (lp[0, 3] - ref[0, 3]) + 1.5), abs=1e-6)


def _ref_gae(values, rewards, gamma, lmbda):
    b, r = values.shape
    adv = [[0.0] * r for _ in range(b)]
    for i in range(b):
        for t in range(r):
            # A_t = sum_l (gamma * lmbda)^l delta_{t+l}
            total = 0.0
            for k in range(t, r):
                v_next = float(values[i, k + 1]) if k + 1 < r else 0.0
                delta = float(rewards[i, k]) + gamma * v_next - float(values[i, k])
                total += (gamma * lmbda) ** (k - t) * delta
            adv[i][t] = total
    return torch.tensor(adv, dtype=torch.float64)


def test_estimate_advantages_is_gae_then_whitened():
    g = torch.Generator().manual_seed(2)
    values = torch.randn(3, 5, generator=g, dtype=torch.float64)
    rewards = torch.randn(3, 5, generator=g, dtype=torch.float64)
    masks = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    raw = _ref_gae(values, rewards, 0.9, 0.95)
    adv, returns = rlhf.estimate_advantages(values, rewards, 0.9, 0.95, masks=masks)
    torch.testing.assert_close(returns, raw + values)
    expected = _ref_whiten(raw, masks).masked_fill(~masks, 0.0)
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=1e-6)
    adv_all, _ = rlhf.estimate_advantages(values, rewards, 0.9, 0.95)
    torch.testing.assert_close(adv_all, _ref_whiten(raw, torch.ones_like(masks)), atol=1e-6, rtol=1e-6)
