"""PPOLoss, GRPOLoss and group advantages against reference computations written token by token here."""

import math

import pytest
import torch

from torchtune import rlhf
from torchtune.rlhf.loss import GRPOLoss, PPOLoss


def _clip(x, lo, hi):
    return min(max(x, lo), hi)


def test_ppo_loss_matches_token_by_token_reference():
    g = torch.Generator().manual_seed(0)
    b, r = 3, 5
    old = torch.randn(b, r, generator=g, dtype=torch.float64)
    new = old + 0.3 * torch.randn(b, r, generator=g, dtype=torch.float64)
    adv = torch.randn(b, r, generator=g, dtype=torch.float64)
    v_old = torch.randn(b, r, generator=g, dtype=torch.float64)
    v_new = v_old + 0.5 * torch.randn(b, r, generator=g, dtype=torch.float64)
    ret = torch.randn(b, r, generator=g, dtype=torch.float64)
    pmask = torch.rand(b, r, generator=g) > 0.25
    vmask = torch.rand(b, r, generator=g) > 0.25
    eps, c, coeff = 0.2, 0.3, 0.1
    pol, val, clipped, ratios = [], [], [], []
    for i in range(b):
        for t in range(r):
            ratio = math.exp(float(new.detach()[i, t] - old[i, t]))
            a = float(adv[i, t])
            lu, lc = -a * ratio, -a * _clip(ratio, 1 - eps, 1 + eps)
            ratios.append(ratio)
            if pmask[i, t]:
                pol.append(max(lu, lc))
                clipped.append(1.0 if lc > lu else 0.0)
            vc = _clip(float(v_new[i, t]), float(v_old[i, t]) - c, float(v_old[i, t]) + c)
            if vmask[i, t]:
                val.append(max((float(v_new[i, t] - ret[i, t])) ** 2, (vc - float(ret[i, t])) ** 2))
    ref_policy = sum(pol) / len(pol)
    ref_value = 0.5 * sum(val) / len(val)
    loss, policy_loss, value_loss, mean_ratio, clipfrac = PPOLoss(epsilon=eps, value_clip_range=c, value_coeff=coeff)(
        old, new, adv, v_old, v_new, ret, padding_masks=pmask, value_padding_masks=vmask
    )
    assert float(policy_loss) == pytest.approx(ref_policy, rel=1e-6)
    assert float(value_loss) == pytest.approx(ref_value, rel=1e-6)
    assert float(loss) == pytest.approx(ref_policy + coeff * ref_value, rel=1e-6)
    assert float(mean_ratio) == pytest.approx(sum(ratios) / len(ratios), rel=1e-9)
    assert float(clipfrac) == pytest.approx(sum(clipped) / len(clipped), rel=1e-6)
    # Without masks every token counts.
    loss_all = PPOLoss(epsilon=eps, value_clip_range=c, value_coeff=coeff)(old, new, adv, v_old, v_new, ret)[0]
    full = torch.ones_like(pmask)
    expected_all = PPOLoss(epsilon=eps, value_clip_range=c, value_coeff=coeff)(
        old, new, adv, v_old, v_new, ret, full, full)[0]
    assert float(loss_all) == pytest.approx(float(expected_all), rel=1e-6)


def test_grpo_loss_matches_token_by_token_reference_and_gradient():
    g = torch.Generator().manual_seed(1)
    b, r = 4, 6
    old = torch.randn(b, r, generator=g, dtype=torch.float64)
    new = (old + 0.4 * torch.randn(b, r, generator=g, dtype=torch.float64)).requires_grad_()
    ref = old + 0.2 * torch.randn(b, r, generator=g, dtype=torch.float64)
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    mask = torch.rand(b, r, generator=g) > 0.3
    eps, eps_high, beta = 0.2, 0.28, 0.05
    out = GRPOLoss(epsilon=eps, epsilon_high=eps_high, kl_coeff=beta)(old, new, ref, adv, mask)
    total, kl_total, clipped = 0.0, 0.0, 0
    for i in range(b):
        for t in range(r):
            if not mask[i, t]:
                continue
            ratio = math.exp(float(new.detach()[i, t] - old[i, t]))
            a = float(adv[i])
            surrogate = min(ratio * a, _clip(ratio, 1 - eps, 1 + eps_high) * a)
            d = float(ref[i, t] - new.detach()[i, t])
            kl = math.exp(d) - d - 1
            total += -(surrogate - beta * kl)
            kl_total += kl
            clipped += int(_clip(ratio, 1 - eps, 1 + eps_high) != ratio)
    assert float(out.loss.detach()) == pytest.approx(total, rel=1e-9)
    assert float(out.kl) == pytest.approx(kl_total, rel=1e-9)
    assert int(out.clipfrac) == clipped
    assert int(out.num_tokens) == int(mask.sum())
    # d loss / d new: unclipped tokens carry -A * ratio + beta * (1 - exp(ref - new)); clipped ones only the KL.
    out.loss.backward()
    for i in range(b):
        for t in range(r):
            ratio = math.exp(float(new.detach()[i, t] - old[i, t]))
            a = float(adv[i])
            active = ratio * a <= _clip(ratio, 1 - eps, 1 + eps_high) * a
            d = float(ref[i, t] - new.detach()[i, t])
            expected = (-a * ratio if active else 0.0) + beta * (1 - math.exp(d))
            assert float(new.grad[i, t]) == pytest.approx(expected if mask[i, t] else 0.0, abs=1e-9)
    with pytest.raises(ValueError, match="advantages need shape"):
        GRPOLoss()(old, new, ref, adv[:2], mask)


def test_group_advantages():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.5, 2.0, 3.0])
    adv = rlhf.group_advantages(rewards, 4)
    for k in range(3):
        grp = [float(x) for x in rewards[4 * k: 4 * k + 4]]
        mu = sum(grp) / 4
        sd = math.sqrt(sum((x - mu) ** 2 for x in grp) / 3)
        for j in range(4):
            assert float(adv[4 * k + j]) == pytest.approx((grp[j] - mu) / (sd + 1e-4), rel=1e-5)
    assert adv[4:8].abs().max() == 0  # all answers equal: no signal
    centred = rlhf.group_advantages(rewards, 4, scale=False)
    torch.testing.assert_close(centred[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    with pytest.raises(ValueError, match="multiple of group_size"):
        rlhf.group_advantages(rewards[:5], 4)
    with pytest.raises(ValueError, match="at least 2"):
        rlhf.group_advantages(rewards, 1)


@pytest.mark.parametrize("completion,answer,expected", [
    ("7", "7", 1.0),
    ("The answer is 7.0", "7", 1.0),
    ("so 14/2", "#### 7", 1.0),
    ("3 + 4 = 8", "7", 0.0),
    ("6.99", "7", 0.0),
    ("<answer>1,024</answer> and then 5", "Work: 2^10 = 1024\n#### 1024", 1.0),
    ("<answer>12</answer>", "13", 0.0),
    ("no number at all", "7", 0.0),
    ("73", "7", 0.0),
])
def test_arithmetic_answer_reward(completion, answer, expected):
    assert rlhf.ArithmeticAnswerReward()(completion, answer) == expected


def test_arithmetic_answer_reward_options_and_bad_reference():
    assert rlhf.ArithmeticAnswerReward(format_bonus=0.1)("<answer>3</answer>", "4") == pytest.approx(0.1)
    assert rlhf.ArithmeticAnswerReward(require_tags=True)("4", "4") == 0.0
    with pytest.raises(ValueError, match="not a number"):
        rlhf.ArithmeticAnswerReward()("4", "four")
