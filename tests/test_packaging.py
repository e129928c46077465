"""`theory/` ships inside the distribution as `murphyjax.theory` (editable install and wheel)."""

import os
import pathlib
import subprocess
import sys
import zipfile

import murphyjax

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_editable_install_exposes_theory_from_the_top_level_folder():
    import murphyjax.theory as th

    assert pathlib.Path(th.__file__).resolve() == ROOT / "theory" / "__init__.py"
    assert murphyjax.theory is th


def test_built_wheel_contains_and_exposes_murphyjax_theory(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    (wheel,) = tmp_path.glob("murphyjax-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for required in ["murphyjax/__init__.py", "murphyjax/theory/__init__.py", "murphyjax/theory/murphy.py",
                     "murphyjax/theory/checks/__init__.py", "murphyjax/experiments/__init__.py"]:
        assert required in names, required
    # every python file of theory/ and experiments/ ships
    for folder, pkg in [("theory", "murphyjax/theory"), ("experiments", "murphyjax/experiments")]:
        for py in (ROOT / folder).rglob("*.py"):
            assert f"{pkg}/{py.relative_to(ROOT / folder).as_posix()}" in names, py
    # the benchmarks are scripts of the repository, not part of the package
    assert not [n for n in names if "bench" in n.rsplit("/", 1)[-1]], names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=600)
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run(
        [sys.executable, "-c", "import murphyjax.theory as t; print(t.__file__); print(float(t.kappa(0.1)))"],
        check=True, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    path, value = out.stdout.split()
    assert pathlib.Path(path).resolve().is_relative_to(target.resolve())
    assert abs(float(value) - 0.08109302162163289) < 1e-15
