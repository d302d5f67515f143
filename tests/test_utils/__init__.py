"""Shared fixtures for tests: tiny random-init reference models saved with `transformers`."""

from tests.test_utils.hf_fixtures import TINY_LLAMA, make_hf_llama, save_hf_llama

__all__ = ["TINY_LLAMA", "make_hf_llama", "save_hf_llama"]
