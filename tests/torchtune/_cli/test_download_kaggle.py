"""`tune download --source kaggle`, through the real CLI with a fake kagglehub module."""
import json
import os

_FAKE_KAGGLEHUB = '''
import json, os, pathlib

def model_download(handle):
    if handle == "owner/missing/pyTorch/1":
        raise RuntimeError("404 Client Error: model not found\\nmore detail")
    folder = pathlib.Path(os.environ["FAKE_KAGGLE_CACHE"]) / handle.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_text("weights")
    (folder / "seen.json").write_text(json.dumps(
        {"handle": handle, "user": os.environ.get("KAGGLE_USERNAME"), "key": os.environ.get("KAGGLE_KEY")}))
    return str(folder)
'''


def _fake_env(tmp_path):
    fake = tmp_path / "fake_site"
    fake.mkdir()
    (fake / "kagglehub.py").write_text(_FAKE_KAGGLEHUB)
    path = os.pathsep.join(p for p in (str(fake), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "FAKE_KAGGLE_CACHE": str(tmp_path / "cache"), "KAGGLE_USERNAME": None,
            "KAGGLE_KEY": None}


def test_kaggle_download_with_credentials_and_output_dir(run_tune, tmp_path):
    out_dir = tmp_path / "gemma"
    out = run_tune("download", "google/gemma/pyTorch/2b", "--source", "kaggle", "--output-dir", str(out_dir),
                   "--kaggle-username", "me", "--kaggle-api-key", "secret", env=_fake_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert (out_dir / "model.safetensors").read_text() == "weights"
    seen = json.loads((out_dir / "seen.json").read_text())
    assert seen == {"handle": "google/gemma/pyTorch/2b", "user": "me", "key": "secret"}
    assert str(out_dir / "model.safetensors") in out.stdout


def test_kaggle_download_into_the_kagglehub_cache(run_tune, tmp_path):
    out = run_tune("download", "google/gemma/pyTorch/2b", "--source", "kaggle", env=_fake_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert str(tmp_path / "cache" / "google_gemma_pyTorch_2b") in out.stdout


def test_kaggle_errors_are_one_line(run_tune, tmp_path):
    env = _fake_env(tmp_path)
    out = run_tune("download", "owner/missing/pyTorch/1", "--source", "kaggle", env=env)
    assert out.returncode == 1
    assert "Kaggle download of 'owner/missing/pyTorch/1' failed: 404 Client Error: model not found" in out.stderr
    assert "Traceback" not in out.stderr and "more detail" not in out.stderr
    out = run_tune("download", "a/b/c/d", "--source", "kaggle", "--kaggle-username", "me", env=env)
    assert out.returncode == 1 and "pass both --kaggle-username and --kaggle-api-key" in out.stderr


def test_kaggle_without_kagglehub_says_how_to_get_it(run_tune, tmp_path):
    out = run_tune("download", "google/gemma/pyTorch/2b", "--source", "kaggle")
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install kagglehub" in lines[0], out.stderr
