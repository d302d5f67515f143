import subprocess
import sys

import pytest

VERBS = ["ls", "cp", "cat", "validate", "run", "download"]


def test_top_level_help_lists_every_verb(run_tune):
    out = run_tune("--help")
    assert out.returncode == 0, out.stderr
    for verb in VERBS:
        assert f"    {verb} " in out.stdout
    assert "examples:" in out.stdout


def test_no_arguments_prints_help(run_tune):
    out = run_tune()
    assert out.returncode == 0
    assert out.stdout.startswith("usage: tune")


@pytest.mark.parametrize("verb", VERBS)
def test_verb_help(run_tune, verb):
    out = run_tune(verb, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: tune {verb}")
    assert "examples:" in out.stdout


def test_version(run_tune):
    import torchtune

    out = run_tune("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"torchtune {torchtune.__version__}"


def test_unknown_verb_fails(run_tune):
    out = run_tune("lst")
    assert out.returncode == 2
    assert "invalid choice: 'lst'" in out.stderr


def test_cli_import_does_not_load_torch():
    # `tune ls` / `tune cp` must start fast: torch is imported only by the verbs that need it.
    code = (
        "import sys, torchtune._cli.tune; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
