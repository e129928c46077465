"""Saved results (experiments/common/store.py): a file that no longer loads is reported and computed again."""

import json
import os

import numpy as np
import pytest

from murphyjax.experiments.common import store

CORRUPTIONS = {
    "truncated": lambda b: b[: len(b) // 2],
    "cut_to_one_byte": lambda b: b[:1],
    "empty": lambda b: b"",
    "garbage": lambda b: bytes(np.random.default_rng(0).integers(0, 256, len(b), dtype=np.uint8)),
    "zeros": lambda b: bytes(len(b)),
}


@pytest.mark.parametrize("kind, value", [("npz", {"a": np.arange(1000.0), "b": np.ones((3, 4), np.int32)}),
                                         ("json", [{"x": 1.5, "y": "two"}] * 200)])
@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_cached_file_is_reported_and_recomputed(tmp_path, capsys, kind, value, corruption):
    calls = []

    def compute():
        calls.append(1)
        return value

    store.cached(tmp_path, "r", compute)
    path = tmp_path / f"r.{kind}"
    path.write_bytes(CORRUPTIONS[corruption](path.read_bytes()))
    got = store.cached(tmp_path, "r", compute)
    assert len(calls) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "unreadable" in err[0] and "recomputing it" in err[0]
    if kind == "npz":
        assert got.keys() == value.keys() and all(np.array_equal(got[k], value[k]) for k in value)
    else:
        assert got == value
    assert store.cached(tmp_path, "r", compute) is not None and len(calls) == 2  # saved again, read back whole


def test_a_saved_file_that_loads_is_not_recomputed(tmp_path):
    store.save_json(tmp_path / "r.json", {"k": [1, 2]})
    assert store.load_saved(tmp_path / "r.json", store.load_json) == {"k": [1, 2]}
    assert store.load_saved(tmp_path / "absent.json", store.load_json) is None


def test_a_loader_can_refuse_a_readable_file(tmp_path, capsys):
    store.save_npz(tmp_path / "c.npz", {"a": np.zeros(3)})

    def four_rows(p):
        a = store.load_npz(p)
        if a["a"].shape != (4,):
            raise ValueError("it does not hold 4 rows")
        return a

    assert store.load_saved(tmp_path / "c.npz", four_rows) is None
    assert "it does not hold 4 rows" in capsys.readouterr().err and not (tmp_path / "c.npz").exists()


def test_a_folder_in_place_of_a_saved_file_is_an_error_not_removed(tmp_path):
    (tmp_path / "r.npz").mkdir()
    with pytest.raises(IsADirectoryError):
        store.cached(tmp_path, "r", lambda: {"a": np.zeros(2)})
    assert (tmp_path / "r.npz").is_dir()


def test_a_corrupt_theory_check_cache_is_recomputed(tmp_path, monkeypatch, capsys):
    import murphyjax.theory.checks as checks
    from murphyjax.experiments.lab import section

    rows = [checks.Row(id="lemma1.kappa", ref="Lemma 1", what="kappa", closed_form=1.0, independent=1.0,
                       method="exact", tol=1e-12)]
    calls = []
    monkeypatch.setattr(checks, "run_all", lambda seed: calls.append(seed) or rows)
    section._theory_checks(0, str(tmp_path))
    (path,) = tmp_path.glob("theory_check-*.json")
    for broken in (path.read_bytes()[:20], b"{}", b"[]", json.dumps([1, 2]).encode(), json.dumps([{"id": 1}]).encode()):
        path.write_bytes(broken)
        assert [r.id for r in section._theory_checks(0, str(tmp_path))] == ["lemma1.kappa"]
        assert "unreadable" in capsys.readouterr().err
    assert len(calls) == 6 and os.path.exists(path)
    section._theory_checks(0, str(tmp_path))
    assert len(calls) == 6  # the recomputed cache is read back
