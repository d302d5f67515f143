import pytest
import torch
from omegaconf import OmegaConf

from torchtune import training
from torchtune.training import RecipeState, StepMetrics, TrainLoop


class _Logger:
    def __init__(self):
        self.logged = []

    def log_dict(self, metrics, step):
        self.logged.append((step, dict(metrics)))

    def log(self, name, value, step):
        self.logged.append((step, {name: value}))


class _LM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(7, 4)
        self.out = torch.nn.Linear(4, 7)

    def forward(self, tokens):
        return self.out(self.emb(tokens))


class _SumCE(torch.nn.Module):
    ignore_index = -100

    def forward(self, logits, labels, reduction="sum"):
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100,
                                                 reduction=reduction)


def _samples():
    g = torch.Generator().manual_seed(1)
    return [{"tokens": torch.randint(0, 7, (5,), generator=g).tolist(),
             "labels": torch.randint(0, 7, (5,), generator=g).tolist()} for _ in range(4)]


def toy_dataset(tokenizer):
    return _samples()


class _Tok:
    pad_id = 0


def _run(batch_size, accumulation, tmp_logger, loss_step=None):
    cfg = OmegaConf.create({"dataset": {"_component_": f"{__name__}.toy_dataset"}, "shuffle": False,
                            "batch_size": batch_size, "gradient_accumulation_steps": accumulation})
    model, loss_fn = _LM(), _SumCE()
    state = RecipeState(seed=0, total_epochs=1)
    data = training.setup_sft_data(cfg, _Tok(), ignore_index=-100, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = TrainLoop.from_config(cfg, state, data, tmp_logger, torch.device("cpu"), optimizer=opt)
    saves = []
    loop.run(model, loss_fn, opt, save_checkpoint=lambda epoch, **kw: saves.append((epoch, kw)), loss_step=loss_step)
    return model, state, saves


def test_two_micro_batches_of_two_equal_one_batch_of_four():
    big, state_big, _ = _run(4, 1, _Logger())
    small, state_small, saves = _run(2, 2, _Logger())
    assert state_big.global_step == state_small.global_step == 1
    assert saves == [(0, {"samples_consumed": 0, "intermediate": False})]
    # Independent reference: one SGD step on the token-mean loss of all four samples.
    ref = _LM()
    samples = _samples()
    tokens = torch.tensor([s["tokens"] for s in samples])
    labels = torch.tensor([s["labels"] for s in samples])[:, 1:]
    loss = torch.nn.functional.cross_entropy(ref(tokens)[:, :-1].flatten(0, 1), labels.flatten())
    loss.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    for a, b, c in zip(big.parameters(), small.parameters(), ref.parameters()):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, c)


def test_a_custom_loss_step_replaces_the_sft_objective():
    calls = []

    def zero_logit_mean(model, loss_fn, batch, activations_ctx):
        calls.append(sorted(batch))
        logits = model(batch["tokens"])
        return logits.pow(2).sum(), torch.tensor(logits.numel())

    trained, state, _ = _run(2, 1, _Logger(), loss_step=zero_logit_mean)
    assert state.global_step == 2 and calls == [["labels", "tokens"]] * 2
    # Independent reference: two SGD steps on the mean squared logit, batches in order.
    ref, samples = _LM(), _samples()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for i in (0, 2):
        opt.zero_grad()
        ref(torch.tensor([s["tokens"] for s in samples[i:i + 2]])).pow(2).mean().backward()
        opt.step()
    for a, b in zip(trained.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)


def test_metrics_logged_every_step():
    logger = _Logger()
    _run(1, 1, logger)
    assert [step for step, _ in logger.logged] == [1, 2, 3, 4]
    assert set(logger.logged[0][1]) == {"loss", "lr", "tokens_per_second_per_gpu"}


def test_step_metrics_are_logged_with_the_step_and_may_replace_tokens_per_second():
    calls = []

    def step_metrics():
        calls.append(len(calls) + 1)
        return {"rewards/margins": float(len(calls)), "tokens_per_second_per_gpu": 123.0}

    logger = _Logger()
    cfg = OmegaConf.create({"dataset": {"_component_": f"{__name__}.toy_dataset"}, "shuffle": False, "batch_size": 2})
    model, state = _LM(), RecipeState(seed=0, total_epochs=1)
    data = training.setup_sft_data(cfg, _Tok(), ignore_index=-100, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loop = TrainLoop.from_config(cfg, state, data, logger, torch.device("cpu"), optimizer=opt)
    loop.run(model, _SumCE(), opt, save_checkpoint=lambda epoch, **kw: None, step_metrics=step_metrics)
    assert calls == [1, 2]
    assert [(step, m["rewards/margins"], m["tokens_per_second_per_gpu"]) for step, m in logger.logged] == [
        (1, 1.0, 123.0), (2, 2.0, 123.0)]


@pytest.mark.parametrize("step, n, expected", [(4, 2, True), (3, 2, False), (4, None, False), (4, 0, False)])
def test_every_n_steps(step, n, expected):
    assert training.every_n_steps(step, n) is expected


def test_should_save_mid_epoch_skips_the_last_step_of_an_epoch():
    state = RecipeState(seed=0, total_epochs=1, global_step=4, steps_into_epoch=4)
    assert training.should_save_mid_epoch(state, steps_per_epoch=5, save_every_n_steps=2)
    state.steps_into_epoch = 5
    assert not training.should_save_mid_epoch(state, steps_per_epoch=5, save_every_n_steps=2)


def test_step_metrics_off_rank_zero_logs_nothing():
    logger = _Logger()
    metrics = StepMetrics(logger, torch.device("cpu"), is_rank_zero=False)
    metrics.start_epoch(0, 1, 0)
    metrics.step(1, 1.0, 10, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    metrics.log("val_loss", 1.0, step=1)
    metrics.end_epoch()
    assert logger.logged == []


def test_validation_loss_is_token_mean():
    model, loss_fn = _LM(), _SumCE()
    batches = [{"tokens": torch.tensor([[1, 2, 3]]), "labels": torch.tensor([[1, 2, 3]])}] * 2
    step = lambda b: training.sft_loss_step(model, loss_fn, b, torch.autograd.graph.saved_tensors_hooks(  # noqa: E731
        lambda x: x, lambda x: x))
    value = training.validation_loss(model, batches, step, torch.device("cpu"))
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(torch.tensor([[1, 2, 3]]))[0, :-1], torch.tensor([2, 3]))
    assert value == pytest.approx(float(expected), rel=1e-6)
    assert model.training
