"""`tune download` end to end: the real CLI and huggingface_hub against a local fake Hub.

The server answers the paths huggingface_hub's ``snapshot_download`` calls (repo info, tree
listing, HEAD/GET of each file); the test points the client at it with ``HF_ENDPOINT``.
"""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pytest

SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_test_secret_token_123"
FILES = {
    "config.json": b'{"model_type": "llama"}',
    "model.safetensors": bytes(range(256)) * 4,
    "tokenizer.model": b"tokenizer-bytes",
    "original/consolidated.00.pth": b"duplicate-meta-weights" * 10,
    "original/params.json": b'{"dim": 64}',
}
# repo -> (status, X-Error-Code) when refused; "org/private" is refused only without TOKEN.
REFUSED = {
    "org/gated": (401, "GatedRepo"),
    "org/missing": (404, "RepoNotFound"),
    "org/forbidden": (403, None),
    "org/private": (401, None),
}


class _FakeHub(BaseHTTPRequestHandler):
    requests = []  # (method, path, authorization header)

    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", headers=None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj):
        self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"})

    def _route(self):
        path = unquote(urlparse(self.path).path)
        auth = self.headers.get("Authorization")
        type(self).requests.append((self.command, path, auth))
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 4 and parts[1] == "models":
            repo, rest = f"{parts[2]}/{parts[3]}", parts[4:]
        elif len(parts) >= 4 and parts[2] == "resolve":
            repo, rest = f"{parts[0]}/{parts[1]}", parts[2:]
        else:
            return self._send(404)
        refusal = REFUSED.get(repo)
        if refusal and not (repo == "org/private" and auth == f"Bearer {TOKEN}"):
            status, code = refusal
            return self._send(status, b'{"error": "refused"}', {"X-Error-Code": code} if code else {})
        if repo not in ("org/tiny", "org/private"):
            return self._send(404, b"", {"X-Error-Code": "RepoNotFound"})
        if rest[:1] == ["revision"]:
            return self._json({"id": repo, "sha": SHA, "siblings": [{"rfilename": f} for f in FILES]})
        if rest[:2] == ["tree", SHA]:
            return self._json(
                [
                    {"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                    for f, b in FILES.items()
                ]
            )
        if rest[:2] == ["resolve", SHA]:
            name = "/".join(rest[2:])
            body = FILES[name]
            etag = f'"{hashlib.sha1(body).hexdigest()}"'
            return self._send(200, body, {"ETag": etag, "X-Repo-Commit": SHA})
        return self._send(404)

    do_GET = _route
    do_HEAD = _route


@pytest.fixture
def hub(tmp_path):
    _FakeHub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    env = {
        "HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        "HF_HOME": str(tmp_path / "hf_home"),  # no stored token, no writes to ~/.cache
        "HF_HUB_OFFLINE": None,  # tests/conftest.py sets it for the rest of the suite
        "HF_TOKEN": None,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    yield env
    server.shutdown()
    server.server_close()


def _downloaded(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(folder).parts
    }


def test_download_fetches_every_file_by_default(run_tune, hub, tmp_path):
    # torchtune's default: no pattern, so nothing is skipped unless the config's command says so.
    out_dir = tmp_path / "tiny"
    out = run_tune("download", "org/tiny", "--output-dir", str(out_dir), env=hub)
    assert out.returncode == 0, out.stderr
    expected = dict(FILES)
    assert _downloaded(out_dir) == expected
    assert str(out_dir) in out.stdout
    for name in expected:
        assert name in out.stdout


def test_llama3_config_pattern_skips_the_consolidated_checkpoint(run_tune, hub, tmp_path):
    out_dir = tmp_path / "tiny"
    out = run_tune("download", "org/tiny", "--output-dir", str(out_dir), "--ignore-patterns",
                   "original/consolidated.00.pth", env=hub)
    assert out.returncode == 0, out.stderr
    assert _downloaded(out_dir) == {k: v for k, v in FILES.items() if k != "original/consolidated.00.pth"}


def test_ignore_patterns_default_and_help_match_torchtune():
    import argparse

    from torchtune._cli.download import FAMILY_IGNORE_PATTERNS, DownloadCommand

    parser = argparse.ArgumentParser()
    DownloadCommand().add_arguments(parser)
    assert parser.parse_args(["org/tiny"]).ignore_patterns is None
    assert parser.parse_args(["org/tiny", "--ignore-patterns", "*.safetensors"]).ignore_patterns == ["*.safetensors"]
    help_text = " ".join(parser.format_help().split())
    assert "default: none, download everything" in help_text
    assert set(FAMILY_IGNORE_PATTERNS.values()) == {"*.safetensors", "original/consolidated.00.pth"}
    for pattern in FAMILY_IGNORE_PATTERNS.values():
        assert repr(pattern) in help_text


def test_download_honours_ignore_patterns(run_tune, hub, tmp_path):
    out_dir = tmp_path / "tiny"
    patterns = ["--ignore-patterns", "*.safetensors", "*.json"]
    out = run_tune("download", "org/tiny", "--output-dir", str(out_dir), *patterns, env=hub)
    assert out.returncode == 0, out.stderr
    assert set(_downloaded(out_dir)) == {"tokenizer.model", "original/consolidated.00.pth"}
    fetched = {p for m, p, _ in _FakeHub.requests if m == "GET" and "/resolve/" in p}
    kept = ("tokenizer.model", "original/consolidated.00.pth")
    assert fetched == {f"/org/tiny/resolve/{SHA}/{f}" for f in kept}


def test_private_repo_401_then_token_from_env(run_tune, hub, tmp_path):
    out = run_tune("download", "org/private", "--output-dir", str(tmp_path / "a"), env=hub)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert "not authorized to access org/private (401)" in lines[0] and "--hf-token" in lines[0]

    with_token = {**hub, "HF_TOKEN": TOKEN}
    out = run_tune("download", "org/private", "--output-dir", str(tmp_path / "b"), env=with_token)
    assert out.returncode == 0, out.stderr
    assert "config.json" in _downloaded(tmp_path / "b")
    assert TOKEN not in out.stdout + out.stderr
    assert all(auth == f"Bearer {TOKEN}" for _, p, auth in _FakeHub.requests[-3:])


def test_hf_token_flag_is_sent(run_tune, hub, tmp_path):
    out_dir = str(tmp_path / "c")
    out = run_tune("download", "org/private", "--output-dir", out_dir, "--hf-token", TOKEN, env=hub)
    assert out.returncode == 0, out.stderr
    assert TOKEN not in out.stdout + out.stderr


@pytest.mark.parametrize(
    "repo, message",
    [
        ("org/gated", "org/gated is a gated repo (401): request access at"),
        ("org/missing", "repository org/missing not found (404): check the repo id"),
        ("org/forbidden", "access to org/forbidden is forbidden (403)"),
    ],
)
def test_refusals_become_one_line_explanations(run_tune, hub, tmp_path, repo, message):
    out = run_tune("download", repo, "--output-dir", str(tmp_path / "out"), env=hub)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("tune download: error: ")
    assert message in lines[0]


def test_offline_mode_is_explained(run_tune, hub, tmp_path):
    offline = {**hub, "HF_HUB_OFFLINE": "1"}
    out = run_tune("download", "org/tiny", "--output-dir", str(tmp_path / "x"), env=offline)
    assert out.returncode == 1
    assert "HF_HUB_OFFLINE is set" in out.stderr
