import pytest
import torch

from torchtune import training


class _Rope(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("cache", torch.empty(0, device="meta"), persistent=False)

    def rope_init(self):
        self.cache = torch.arange(4.0)


def test_init_meta_buffers_computes_rope_tables():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), _Rope())
    training.init_meta_buffers(model, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(model[1].cache, torch.tensor([0.0, 1.0, 2.0, 3.0]))


def test_init_meta_buffers_refuses_leftover_meta_params():
    with torch.device("meta"):
        model = torch.nn.Linear(2, 2)
    with pytest.raises(Exception, match="meta"):
        training.init_meta_buffers(model, torch.device("cpu"), torch.float32)
