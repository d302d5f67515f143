"""The DPO-family losses against formulas written out here (float64, per pair) and against TRL's losses.

TRL 1.16 has no standalone DPO loss function: ``DPOTrainer._compute_loss`` computes it inline from the
model's per-token log-probs. It is called here unbound, on a stand-in trainer and model that hand it
our log-probs (one completion token per row, so the summed log-prob is the given value), with the
reference log-probs precomputed, as TRL does with ``precompute_ref_logps``.
"""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from torchtune.rlhf.loss import DPOLoss, ORPOLoss, RSOLoss, SimPOLoss


def _logps(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Summed response log-probs of plausible size (tens of nats), distinct for policy and reference.
    return [-(torch.rand(b, generator=g, dtype=torch.float64) * 40 + 5) for _ in range(4)]


def _avg_logps(b=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [-(torch.rand(b, generator=g, dtype=torch.float64) * 3 + 0.05) for _ in range(2)]


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


@pytest.mark.parametrize("beta, eps", [(0.1, 0.0), (0.5, 0.2)])
def test_dpo_loss_equals_the_formula(beta, eps):
    pc, pr, rc, rr = _logps()
    losses, chosen, rejected = DPOLoss(beta=beta, label_smoothing=eps)(pc, pr, rc, rr)
    for i in range(pc.numel()):
        h = (pc[i] - rc[i]).item() - (pr[i] - rr[i]).item()
        expected = -(1 - eps) * _log_sigmoid(beta * h) - eps * _log_sigmoid(-beta * h)
        assert losses[i].item() == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert chosen[i].item() == pytest.approx(beta * (pc[i] - rc[i]).item(), rel=1e-12)
        assert rejected[i].item() == pytest.approx(beta * (pr[i] - rr[i]).item(), rel=1e-12)


def test_rso_loss_equals_the_hinge_formula():
    pc, pr, rc, rr = _logps()
    gamma = 0.3
    losses, chosen, rejected = RSOLoss(gamma=gamma)(pc, pr, rc, rr)
    for i in range(pc.numel()):
        h = (pc[i] - rc[i]).item() - (pr[i] - rr[i]).item()
        assert losses[i].item() == pytest.approx(max(0.0, 1 - gamma * h), abs=1e-12)
        assert chosen[i].item() == pytest.approx(gamma * (pc[i] - rc[i]).item(), rel=1e-12)
    assert (losses == 0).any() or (losses > 0).all()  # the hinge is active somewhere


def test_simpo_loss_equals_the_formula():
    ac, ar = _avg_logps()
    beta, gamma, eps = 2.0, 0.5, 0.1
    losses, chosen, rejected = SimPOLoss(beta=beta, gamma=gamma, label_smoothing=eps)(ac, ar)
    for i in range(ac.numel()):
        m = beta * (ac[i] - ar[i]).item() - gamma
        assert losses[i].item() == pytest.approx(-(1 - eps) * _log_sigmoid(m) - eps * _log_sigmoid(-m), rel=1e-12)
        assert chosen[i].item() == pytest.approx(beta * ac[i].item()) and rejected[i].item() == pytest.approx(
            beta * ar[i].item())


def test_orpo_loss_equals_the_formula():
    ac, ar = _avg_logps()
    beta = 0.25
    losses, chosen, _ = ORPOLoss(beta=beta)(ac, ar)
    for i in range(ac.numel()):
        pw, pl = math.exp(ac[i].item()), math.exp(ar[i].item())
        log_odds_ratio = math.log(pw / (1 - pw)) - math.log(pl / (1 - pl))
        expected = -ac[i].item() - beta * _log_sigmoid(log_odds_ratio)
        assert losses[i].item() == pytest.approx(expected, rel=1e-10)
        assert chosen[i].item() == pytest.approx(beta * ac[i].item())


def test_losses_backpropagate_to_the_policy_only():
    pc, pr, rc, rr = (t.clone().requires_grad_(True) for t in _logps())
    losses, chosen, rejected = DPOLoss()(pc, pr, rc, rr)
    losses.sum().backward()
    assert pc.grad is not None and (pc.grad < 0).all() and (pr.grad > 0).all()  # raise chosen, lower rejected
    assert not chosen.requires_grad and not rejected.requires_grad


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="label_smoothing"):
        DPOLoss(label_smoothing=0.5)
    with pytest.raises(ValueError, match="one shape"):
        DPOLoss()(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="one shape"):
        SimPOLoss()(torch.zeros(2), torch.zeros(3))


# --------------------------------------------------------------------------------------------- TRL


def _trl_dpo_loss(loss_type, beta, pc, pr, rc, rr):
    """TRL's DPO loss (mean over pairs) and logged rewards, from DPOTrainer._compute_loss itself."""
    from trl import DPOTrainer

    b = pc.numel()
    logps = torch.cat([pc, pr]).float().unsqueeze(1)  # [2b, 1]: one completion token per row

    class _Model:
        training = True

        def __call__(self, **kwargs):
            zeros = torch.zeros_like(logps)
            return SimpleNamespace(log_probs=logps, entropy=zeros, mean_logits=zeros,
                                   is_top1=torch.zeros_like(logps, dtype=torch.bool))

    accelerator = SimpleNamespace(device=torch.device("cpu"), gather=lambda t: t, gather_for_metrics=lambda t: t)
    trainer = SimpleNamespace(
        model=_Model(), accelerator=accelerator, aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True,
        f_divergence_type="reverse_kl", loss_types=[loss_type], loss_weights=[1.0], beta=beta, label_smoothing=0.0,
        use_weighting=False, _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1,
    )
    inputs = {
        "input_ids": torch.ones(2 * b, 2, dtype=torch.long), "attention_mask": torch.ones(2 * b, 2, dtype=torch.long),
        "completion_mask": torch.tensor([[0, 1]] * (2 * b)),
        "ref_chosen_logps": rc.float(), "ref_rejected_logps": rr.float(),
    }
    loss = DPOTrainer._compute_loss(trainer, trainer.model, inputs, return_outputs=False)
    return loss, trainer._metrics["train"]


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_equals_trl(beta):
    pc, pr, rc, rr = (t.float() for t in _logps(b=8, seed=3))
    trl_loss, trl_metrics = _trl_dpo_loss("sigmoid", beta, pc, pr, rc, rr)
    losses, chosen, rejected = DPOLoss(beta=beta)(pc, pr, rc, rr)
    torch.testing.assert_close(losses.mean(), trl_loss, rtol=1e-6, atol=1e-6)
    assert chosen.mean().item() == pytest.approx(trl_metrics["rewards/chosen"][0], rel=1e-5)
    assert rejected.mean().item() == pytest.approx(trl_metrics["rewards/rejected"][0], rel=1e-5)
    assert (chosen > rejected).float().mean().item() == trl_metrics["rewards/accuracies"][0]


def test_rso_loss_equals_trl_hinge():
    pc, pr, rc, rr = (t.float() for t in _logps(b=8, seed=4))
    trl_loss, _ = _trl_dpo_loss("hinge", 0.05, pc, pr, rc, rr)
    torch.testing.assert_close(RSOLoss(gamma=0.05)(pc, pr, rc, rr)[0].mean(), trl_loss, rtol=1e-6, atol=1e-6)


def test_simpo_loss_equals_trl_cpo_simpo():
    from trl.experimental.cpo import CPOTrainer

    ac, ar = (t.float() for t in _avg_logps(b=8, seed=5))
    stand_in = SimpleNamespace(alpha=0.0, loss_type="simpo", beta=2.0, simpo_gamma=0.5, label_smoothing=0.1,
                               accelerator=SimpleNamespace(device=torch.device("cpu")))
    trl_losses, trl_chosen, trl_rejected = CPOTrainer.cpo_loss(stand_in, ac, ar)
    losses, chosen, rejected = SimPOLoss(beta=2.0, gamma=0.5, label_smoothing=0.1)(ac, ar)
    torch.testing.assert_close(losses, trl_losses)
    torch.testing.assert_close(chosen, trl_chosen)
    torch.testing.assert_close(rejected, trl_rejected)


def test_orpo_loss_equals_trl_odds_ratio_term_plus_nll():
    from trl.experimental.orpo import ORPOTrainer

    ac, ar = (t.float() for t in _avg_logps(b=8, seed=6))
    stand_in = SimpleNamespace(beta=0.1, accelerator=SimpleNamespace(device=torch.device("cpu")))
    trl_or_term = ORPOTrainer.odds_ratio_loss(stand_in, ac, ar)[0]  # TRL's loss is nll - mean(this)
    torch.testing.assert_close(ORPOLoss(beta=0.1)(ac, ar)[0], -ac - trl_or_term)
