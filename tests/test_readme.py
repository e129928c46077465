"""The README's two commands and its quickstart stay true."""

import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_exactly_two_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    first_two = [b.strip() for b in blocks[:2]]
    assert first_two[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/murphyjax ")
    assert first_two[1] == 'python3 -m venv --clear .venv-test && .venv-test/bin/pip install -e ".[test]" && .venv-test/bin/python -m pytest'
    assert all("\n" not in b for b in first_two)
    # nothing but prose before the first command
    assert README.index("```bash") < README.index("## ")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci and "python3 -m venv --clear" in ci


def test_quickstart_runs_and_its_comments_are_right():
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README, flags=re.S).group(1)
    ns: dict = {}
    exec(compile(code, "README-quickstart", "exec"), ns)
    T = ns["T"]
    np.testing.assert_allclose(T.kappa(0.1), 0.081093, atol=5e-7)
    np.testing.assert_allclose(T.murphy_lower_bound(n=1000, alpha=0.05, eps=0.1, gamma=0.05), 2.17e-4, rtol=0.005)
    np.testing.assert_allclose(T.oracle_queries(alpha=0.05, eps=0.1, gamma=0.05, eta=0.0005), 4605.17, atol=0.01)
    np.testing.assert_allclose(T.gaussian_gap(lam=2.0, var_true=1.0, var_noise=0.5)["gap"], 1.0)
    np.testing.assert_allclose(T.bon_kl_bound(1000), 5.9088, atol=5e-5)


def test_no_module_imports_another_modules_private_names():
    """Imports flow one way through public names: the library and the experiments use theory's public
    modules (validate, numerics), never a private name of another module."""
    import ast

    bad = []
    for path in sorted((ROOT).glob("**/*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] not in ("murphyjax", "theory", "experiments", "benchmarks"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(rel))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("murphyjax"):
                top = {"murphyjax": ("murphyjax",), "theory": ("murphyjax", "theory"),
                       "experiments": ("murphyjax", "experiments")}.get(rel.parts[0], ("benchmarks",))
                package = ".".join(top + rel.with_suffix("").parts[1:-1])
                parent, _, last = node.module.rpartition(".")
                # a private module of the importing file's own package is its own business
                hidden_module = any(p.startswith("_") for p in node.module.split(".")) and \
                    not (parent == package and last.startswith("_"))
                for a in node.names:
                    if hidden_module or (a.name.startswith("_") and not a.name.startswith("__")):
                        bad.append(f"{rel}: from {node.module} import {a.name}")
    assert not bad, bad
