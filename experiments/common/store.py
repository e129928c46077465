"""Results on disk: atomic writes, a folder of named cached results, and the source hash that keys them.

Every result a run saves goes through ``write_atomic`` (a temporary file in the same folder, fsync, then
``os.replace``), so a run killed at any moment leaves either the old file or the new one, never a part.
A cache folder is keyed by the source hash of the code that computed it: changed code never reuses old
results. A saved result that no longer loads (a disk error, a copy cut short) is reported in one line and
computed again (``load_saved``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import sys
import types
import zipfile
import zlib
from typing import Callable

import numpy as np


def write_atomic(path: str | os.PathLike, write: Callable, *, text: bool = False) -> None:
    """Write ``path`` through ``write(fh)`` on a temporary file in the same folder, then rename it."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w" if text else "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def jsonable(x):
    """``json.dump``'s ``default``: NumPy scalars and arrays as Python numbers and lists."""
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def save_json(path, obj) -> None:
    write_atomic(path, lambda fh: json.dump(obj, fh, default=jsonable), text=True)


def save_npz(path, arrays: dict) -> None:
    write_atomic(path, lambda fh: np.savez(fh, **arrays))


def load_npz(path) -> dict:
    """Every array of an ``.npz`` file, read in full (no pickled objects)."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# what a truncated or corrupt file raises on loading (JSONDecodeError and UnicodeDecodeError are ValueErrors)
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, MemoryError, zipfile.BadZipFile, zlib.error)


def load_saved(path, load: Callable = load_npz):
    """``load(path)``, or None when ``path`` is absent or no longer loads.

    A file that fails to load (truncated, corrupt, or rejected by ``load``'s own checks with a ValueError)
    is reported in one line on stderr and removed, so its caller computes it again. A folder in its place
    is not removed: ``IsADirectoryError``."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        return None
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "a folder where a saved result belongs", path)
    try:
        return load(path)
    except _UNREADABLE as e:
        why = f"{type(e).__name__}: {e}".splitlines()[0][:200]
        print(f"murphyjax: {path} is unreadable ({why}); recomputing it", file=sys.stderr)
        os.remove(path)
        return None


def cached(folder, name: str, compute: Callable):
    """``name`` from ``folder`` if it was saved there (and still loads), else ``compute()`` saved atomically
    and returned.

    A flat dict of arrays is stored as ``name.npz``, anything else (rows: lists of dicts) as ``name.json``."""
    npz, js = os.path.join(folder, f"{name}.npz"), os.path.join(folder, f"{name}.json")
    for path, load in ((npz, load_npz), (js, load_json)):
        value = load_saved(path, load)
        if value is not None:
            return value
    value = compute()
    (save_npz(npz, value) if isinstance(value, dict) else save_json(js, value))
    return value


def source_hash(*sources: types.ModuleType | str | os.PathLike, digits: int = 8) -> str:
    """Hex digest over the source of modules, packages (every ``.py`` below the package, sorted) or files.

    The order of ``sources`` matters; a package's files are read in sorted path order."""
    files: list[pathlib.Path] = []
    for s in sources:
        if isinstance(s, types.ModuleType):
            f = pathlib.Path(s.__file__)
            files += sorted(f.parent.rglob("*.py")) if f.name == "__init__.py" else [f]
        else:
            files.append(pathlib.Path(s))
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:digits]
