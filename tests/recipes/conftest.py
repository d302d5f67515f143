import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    """Recipe tests train tiny models (dim 64, a few hundred tokens a step): one intra-op thread is as fast
    as two, and immune to another process's load, where two threads wait on each other at every op (a
    4-step full fine-tune measured 0.7 s on one thread, 4.1 s on two, on this 2-core machine at load 2).
    ``run_tune`` gives its subprocesses one thread too, so in-process and CLI runs compute alike. Package
    scope: it is in place before the module fixtures (shared runs) and undone after the last recipe test."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
