"""Seeded fuzz of a valid recipe config: deleted keys, wrong types, misspelled component paths and
out-of-range values. Each mutation either passes what `tune validate` and recipe setup check
(validate, top-level key types, building the model, optimizer and loss) or fails with an
anticipated one-line error that names a config key; never with another exception."""

import random
import time

import torch
from omegaconf import OmegaConf

from torchtune import config
from torchtune._errors import anticipated_error_types
from torchtune.config._types import recipe_key_errors, RECIPE_KEY_TYPES

MUTATIONS = 200
BUDGET_SECONDS = 90.0  # about 10 s on an idle machine; fail only on a gross slowdown
TINY = dict(vocab_size=64, num_layers=1, num_heads=2, num_kv_heads=1, embed_dim=16, intermediate_dim=32,
            max_seq_len=32)


_BASE = []


def _base():
    if not _BASE:
        cfg = config.load_config(config.find_config_file("llama2/7B_lora_single_device"))
        cfg.model = OmegaConf.merge(cfg.model, {"_component_": "torchtune.models.llama2.lora_llama2", **TINY})
        _BASE.append(OmegaConf.to_container(cfg, resolve=False))
    return OmegaConf.create(_BASE[0])


def _leaves(node, prefix=""):
    for key in node.keys():
        path = f"{prefix}.{key}" if prefix else str(key)
        value = node._get_node(key)
        if OmegaConf.is_dict(value):
            yield from _leaves(value, path)
        else:
            yield path


_WRONG = ["four", -3, 0, 1.5, True, None, [1, 2], {"a": 1}, "", "1e-3x", 10**12]


def _mutate(cfg, rng):
    keys = [k for k in _leaves(cfg) if not k.startswith(("profiler", "metric_logger"))]
    key = rng.choice(keys)
    kind = rng.choice(["delete", "wrong_type", "misspell", "out_of_range"])
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if kind == "delete":
        del parent[leaf]
    elif kind == "misspell":
        components = [k for k in keys if k.endswith("_component_")]
        key = rng.choice(components)
        value = OmegaConf.select(cfg, key)
        i = rng.randrange(len(value))
        OmegaConf.update(cfg, key, value[:i] + value[i + 1:], merge=False)
    elif kind == "out_of_range":
        key = rng.choice(sorted(k for k in RECIPE_KEY_TYPES if k in cfg) + ["model.lora_rank", "model.num_heads"])
        OmegaConf.update(cfg, key, rng.choice([-1, 0, -100]), merge=False)
    else:
        OmegaConf.update(cfg, key, rng.choice(_WRONG), merge=False)
    return kind, key


def _setup(cfg, section=None):
    """What `tune validate` and a recipe's setup check: validation, then building the mutated
    section among model / optimizer / loss (all three when ``section`` is None)."""
    config.validate(cfg)
    top = {k: cfg[k] for k in RECIPE_KEY_TYPES if k in cfg}
    errors = recipe_key_errors(top)
    if errors:
        raise config.ConfigError(errors)
    if section in (None, "model", "optimizer"):
        model = config.instantiate(cfg.model)
        if section != "model":
            config.instantiate(cfg.optimizer, [p for p in model.parameters() if p.requires_grad])
    if section in (None, "loss"):
        config.instantiate(cfg.loss)


def test_200_config_mutations_run_or_fail_with_a_one_line_error_naming_a_key():
    _setup(_base())  # the unmutated config is valid
    rng = random.Random(0)
    deadline = time.monotonic() + BUDGET_SECONDS
    outcomes = {"ok": 0, "error": 0}
    torch.manual_seed(0)
    for i in range(MUTATIONS):
        assert time.monotonic() < deadline, f"only {i} mutations fit the time budget"
        cfg = _base()
        kind, key = _mutate(cfg, rng)
        try:
            _setup(cfg, key.split(".")[0] if key.split(".")[0] in ("model", "optimizer", "loss") else "none")
        except anticipated_error_types() as err:
            message = str(err)
            lines = [line for line in message.splitlines() if line.strip()]
            assert "config key '" in message or "the config root" in message, (kind, key, message)
            assert all(line.startswith(("Config is not", "  - ", "config key", "the config root")) for line in
                       lines[1:]) or len(lines) == 1, (kind, key, message)
            outcomes["error"] += 1
        except Exception as err:  # noqa: BLE001 - the point of the test
            raise AssertionError(f"mutation {i} ({kind} {key}) raised {type(err).__name__}: {err}") from err
        else:
            outcomes["ok"] += 1
    assert outcomes["error"] >= 50 and outcomes["ok"] >= 10, outcomes
