import os
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Callable, Dict, Optional

import pytest

from torchtune import _recipe_registry


def _tune_executable() -> str:
    # The console script installed next to this interpreter, not a shell shim on PATH.
    script = Path(sysconfig.get_path("scripts")) / "tune"
    if script.is_file():
        return str(script)
    found = shutil.which("tune")
    assert found, "the `tune` console script is not installed (pip install -e .)"
    return found


@pytest.fixture
def run_tune() -> Callable[..., subprocess.CompletedProcess]:
    """Run the real `tune` executable; returns the CompletedProcess (text stdout/stderr).

    ``env`` entries are added to the current environment; a value of None removes the variable.
    """
    exe = _tune_executable()

    def _run(
        *args: str,
        cwd: Optional[Path] = None,
        env: Optional[Dict[str, Optional[str]]] = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess:
        full_env = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        return subprocess.run(
            [exe, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
        )

    return _run


@pytest.fixture
def builtin_config() -> _recipe_registry.Config:
    """The first installed built-in config (which ones exist depends on the recipes shipped)."""
    configs = _recipe_registry.get_all_configs()
    assert configs, "at least one built-in config must be installed"
    return configs[0]


@pytest.fixture
def builtin_recipe() -> _recipe_registry.Recipe:
    """The first installed built-in recipe."""
    recipes = _recipe_registry.get_all_recipes()
    assert recipes, "at least one built-in recipe must be installed"
    return recipes[0]
