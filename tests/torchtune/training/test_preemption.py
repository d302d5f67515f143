"""TrainLoop stopping early: a stop signal, a batch that cannot be read, a vocabulary that does not fit."""

import os
import signal

import pytest
import torch
from omegaconf import OmegaConf

from torchtune import training
from torchtune._errors import DataError, ModelSetupError
from torchtune.training import RecipeState, TrainLoop
from torchtune.training._preemption import resume_command, StopSignals, TrainingStopped


class _LM(torch.nn.Module):
    def __init__(self, vocab=7):
        super().__init__()
        torch.manual_seed(0)
        self.tok_embeddings = torch.nn.Embedding(vocab, 4)
        self.out = torch.nn.Linear(4, vocab)

    def forward(self, tokens):
        return self.out(self.tok_embeddings(tokens))


class _SumCE(torch.nn.Module):
    ignore_index = -100

    def forward(self, logits, labels, reduction="sum"):
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100,
                                                 reduction=reduction)


class _Rows(torch.utils.data.Dataset):
    """8 rows; reading row ``bad`` raises (as a bad dataset row does); ``hook(index)`` runs on each read."""

    bad = None
    hook = None

    def __len__(self):
        return 8

    def __getitem__(self, index):
        if type(self).hook is not None:
            type(self).hook(index)
        if index == type(self).bad:
            raise DataError(f"data.json row {index}: column 'instruction' is null (expected str)")
        g = torch.Generator().manual_seed(index)
        return {"tokens": torch.randint(0, 7, (5,), generator=g).tolist(),
                "labels": torch.randint(0, 7, (5,), generator=g).tolist()}


def rows(tokenizer):
    return _Rows()


class _Tok:
    pad_id = 0
    vocab_size = 7


def _loop(tokenizer=_Tok(), accumulation=1):
    cfg = OmegaConf.create({"dataset": {"_component_": f"{__name__}.rows"}, "shuffle": False, "batch_size": 1,
                            "gradient_accumulation_steps": accumulation, "checkpointer": {"output_dir": "/runs/x"}})
    state = RecipeState(seed=0, total_epochs=2)
    data = training.setup_sft_data(cfg, tokenizer, ignore_index=-100, seed=0)
    model = _LM()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainLoop.from_config(cfg, state, data, None, torch.device("cpu"), optimizer=opt), model, opt


def _metrics_off(loop):
    loop.metrics.is_rank_zero = False  # no logger in these tests


def test_a_failing_batch_read_saves_the_state_before_the_step_and_reraises(monkeypatch, capfd):
    monkeypatch.setattr(_Rows, "bad", 3)
    loop, model, opt = _loop()
    _metrics_off(loop)
    saves = []

    def save(epoch, **kw):
        saves.append((epoch, kw, loop.state.global_step, torch.get_rng_state()))

    with pytest.raises(DataError, match="row 3: column 'instruction' is null"):
        loop.run(model, _SumCE(), opt, save_checkpoint=save)
    # Rows 0-2 trained (3 steps of batch 1); the state after step 3 is saved, mid-epoch.
    assert [(e, kw, step) for e, kw, step, _ in saves] == [(0, {"samples_consumed": 3, "intermediate": True}, 3)]
    err = capfd.readouterr().err
    assert "Checkpoint: /runs/x/step_3" in err and "resume_from_checkpoint=True" in err, err


def test_a_signal_stops_after_the_step_it_arrived_in(monkeypatch, capfd):
    # Two micro-batches per step; the signal arrives while row 3, the second half of step 2, is read.
    monkeypatch.setattr(_Rows, "hook", lambda index: os.kill(os.getpid(), signal.SIGTERM) if index == 3 else None)
    loop, model, opt = _loop(accumulation=2)
    _metrics_off(loop)
    saves = []
    with pytest.raises(TrainingStopped) as stopped:
        loop.run(model, _SumCE(), opt, save_checkpoint=lambda epoch, **kw: saves.append((epoch, kw)))
    assert stopped.value.code == 128 + signal.SIGTERM
    assert loop.state.global_step == 2  # the step that was running finished; no other began
    assert saves == [(0, {"samples_consumed": 4, "intermediate": True})]
    assert stopped.value.checkpoint == "/runs/x/step_2"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    assert "SIGTERM received: finishing the current optimizer step" in capfd.readouterr().err


def test_a_signal_saves_the_generator_as_it_was_before_the_batch_left_untrained(monkeypatch):
    # Reading a row draws from the global generator (as a random transform would). The signal
    # arrives while row 1 is read for step 2, which then does not run: the state saved is the one
    # before that read, where the resumed run reads row 1 again.
    before_read = {}

    def hook(index):
        before_read[index] = torch.get_rng_state()
        torch.rand(1)
        if index == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(_Rows, "hook", hook)
    loop, model, opt = _loop()
    _metrics_off(loop)
    saved = []
    with pytest.raises(TrainingStopped):
        loop.run(model, _SumCE(), opt, save_checkpoint=lambda epoch, **kw: saved.append(torch.get_rng_state()))
    assert loop.state.global_step == 1 and sorted(before_read) == [0, 1]
    assert len(saved) == 1 and torch.equal(saved[0], before_read[1])


def test_a_signal_at_the_end_of_an_epoch_uses_the_epoch_checkpoint(monkeypatch):
    # Row 7 is the second half of step 4, the epoch's last.
    monkeypatch.setattr(_Rows, "hook", lambda index: os.kill(os.getpid(), signal.SIGUSR1) if index == 7 else None)
    loop, model, opt = _loop(accumulation=2)
    _metrics_off(loop)
    saves = []
    with pytest.raises(TrainingStopped) as stopped:
        loop.run(model, _SumCE(), opt, save_checkpoint=lambda epoch, **kw: saves.append((epoch, kw)))
    # Only the (resumable) end-of-epoch save: epoch 2 never starts.
    assert saves == [(0, {"samples_consumed": 0, "intermediate": True})]
    assert stopped.value.checkpoint == "/runs/x/epoch_0" and loop.state.epochs_run == 1


def test_a_second_signal_aborts_at_once(monkeypatch, capfd):
    class _Exited(BaseException):
        pass

    def fake_exit(code):  # os._exit would end the test process
        raise _Exited(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    # Python's default handler, or SIG_IGN when the test process was started in the background
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(_Exited) as exited:
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.signum == signal.SIGINT  # the first one only asks to stop
            os.kill(os.getpid(), signal.SIGINT)
    assert exited.value.args == (128 + signal.SIGINT,)
    assert "SIGINT received again: aborting now" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # the handler from before is back


def test_resume_command_appends_the_flag_and_hides_secrets(monkeypatch):
    monkeypatch.setenv("TUNE_RUN_COMMAND", "tune run lora_finetune_single_device --config my.yaml batch_size=4 "
                                           "resume_from_checkpoint=False wandb.api_key=abc123secret")
    command = resume_command()
    assert command == ("tune run lora_finetune_single_device --config my.yaml batch_size=4 "
                       "'wandb.api_key=<redacted>' resume_from_checkpoint=True")


def test_stop_signals_outside_the_main_thread_install_nothing():
    import threading

    seen = []
    thread = threading.Thread(target=lambda: seen.append(StopSignals().__enter__()._previous))
    thread.start()
    thread.join()
    assert seen == [{}]


def test_a_vocabulary_larger_than_the_embedding_fails_before_training():
    class _BigTok(_Tok):
        vocab_size = 9

    loop, model, opt = _loop(_BigTok())
    with pytest.raises(ModelSetupError, match=r"vocabulary \(9 ids\) does not fit the model's embedding \(7 rows\)"):
        loop.run(model, _SumCE(), opt, save_checkpoint=lambda *a, **k: None)
