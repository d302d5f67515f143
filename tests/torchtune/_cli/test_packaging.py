"""Built-in recipes and configs must ship in a regular (non-editable) install."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from torchtune import _recipe_registry

REPO = Path(__file__).resolve().parents[3]

_LIST = (
    "import json, torchtune; from torchtune import _recipe_registry as r; "
    "listed = [[x.name, [c.name for c in x.configs]] for x in r.get_all_recipes()]; "
    "print(json.dumps([torchtune.__file__, listed]))"
)


@pytest.mark.integration
def test_wheel_install_finds_builtin_recipes_and_configs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("torchtune", "recipes"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("torchtune-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )

    out = subprocess.run(
        [sys.executable, "-c", _LIST],
        cwd=tmp_path,  # away from the source checkout
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    module_file, listed = json.loads(out.stdout)
    assert Path(module_file).is_relative_to(target)
    expected = [[r.name, [c.name for c in r.configs]] for r in _recipe_registry.get_all_recipes()]
    assert any(configs for _, configs in expected), "at least one built-in config must be installed"
    assert listed == expected
