import pytest
import torch
from omegaconf import OmegaConf

from torchtune import training
from torchtune.modules.loss import CEWithChunkedOutputLoss


class _LM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(11, 8)
        self.out = torch.nn.Linear(8, 11)

    def forward(self, tokens):
        return self.out(self.emb(tokens))


def test_sft_loss_step_matches_shifted_cross_entropy():
    model, loss_fn = _LM(), torch.nn.CrossEntropyLoss(ignore_index=-100)

    def loss(logits, labels, reduction):
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100,
                                                 reduction=reduction)

    loss.ignore_index = -100
    tokens = torch.tensor([[1, 2, 3, 4]])
    labels = torch.tensor([[1, 2, -100, 4]])
    total, n = training.sft_loss_step(model, loss, {"tokens": tokens, "labels": labels.clone()},
                                      torch.autograd.graph.saved_tensors_hooks(lambda x: x, lambda x: x))
    # Independent: predict token t+1 from position t; the last position has no target.
    logits = model(tokens)[0]
    expected = sum(torch.nn.functional.cross_entropy(logits[i], labels[0, i + 1], reduction="sum")
                   for i in (0, 2))
    assert int(n) == 2
    torch.testing.assert_close(total, expected)
    del loss_fn


def test_clip_gradients_and_optimizer_step():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    model.weight.grad = torch.tensor([[3.0, 4.0]])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    norm = training.optimizer_step(opt, model, clip_grad_norm=1.0)
    assert float(norm) == pytest.approx(5.0)
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[1 - 0.6, 1 - 0.8]]))
    assert model.weight.grad is None
    assert training.clip_gradients(model.parameters(), None) is None


def test_setup_lr_scheduler_optional_and_resumed():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert training.setup_lr_scheduler(None, opt, num_training_steps=10) is None
    cfg = OmegaConf.create({"_component_": "torchtune.training.get_cosine_schedule_with_warmup",
                            "num_warmup_steps": 2})
    sched = training.setup_lr_scheduler(cfg, opt, num_training_steps=10)
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)  # warmup: 1 of 2 steps
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    resumed = training.setup_lr_scheduler(cfg, opt2, num_training_steps=10,
                                          ckpt={training.LR_SCHEDULER_KEY: sched.state_dict()})
    assert resumed.last_epoch == 1


def test_setup_profiler_default_is_dummy():
    assert isinstance(training.setup_profiler(None), training.DummyProfiler)


def test_prepare_loss_sets_output_chunks():
    class Model(torch.nn.Module):
        chunks = None

        def set_num_output_chunks(self, n):
            self.chunks = n

    model, loss = Model(), CEWithChunkedOutputLoss(num_output_chunks=4)
    assert training.prepare_loss(loss, model) is loss
    assert model.chunks == 4


def test_setup_metric_logger_off_rank_zero_is_none():
    assert training.setup_metric_logger(OmegaConf.create({}), enabled=False) is None
