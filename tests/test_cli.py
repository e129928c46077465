"""The murphyjax console command: help, exit codes, one-line errors."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from murphyjax import cli


def run(*args):
    return subprocess.run([sys.executable, "-m", "murphyjax.cli", *args], capture_output=True, text=True, timeout=600)


def test_help_reads_well():
    out = run("--help")
    assert out.returncode == 0
    assert "theory" in out.stdout and "arXiv:2509.05381" in out.stdout
    out = run("theory", "check", "--help")
    assert out.returncode == 0 and "--json" in out.stdout and "erratum" in out.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        ((), "the following arguments are required: COMMAND"),
        (("nonsense",), "invalid choice: 'nonsense'"),
        (("theory", "check", "--seed", "-3"), "argument --seed: expected a non-negative integer, got '-3'"),
        (("theory", "check", "--bogus"), "unrecognized arguments: --bogus"),
        (("theory", "check", "--select", "no-such-row"), "--select: no check id starts with 'no-such-row'"),
        (("reproduce", "--preset", "llm", "--set", "no_such_key=1"), "unknown key 'no_such_key'"),
        (("reproduce", "--preset", "llm", "--set", "seeds=1", "--set", "variant_seeds=0"), "seeds must be >= 2"),
        (("reproduce", "--preset", "llm", "--set", "eval_points=1"), "eval_points must be >= 2"),
        (("reproduce", "--preset", "llm", "--set", "llm_judge=maybe"), "--set llm_judge: cannot parse 'maybe'"),
        (("reproduce", "--preset", "llm", "--set", "variant_seeds=9"), "variant_seeds must lie in [0, seeds = 5]"),
        (("reproduce", "--preset", "llm", "--max-minutes", "0"), "--max-minutes: expected a number of minutes > 0"),
        (("reproduce", "--preset", "llm", "--max-minutes", "soon"), "expected a number of minutes > 0, got 'soon'"),
        (("reproduce", "--preset", "quick", "--max-minutes", "5"), "--max-minutes applies to the llm presets"),
        (("reproduce", "--preset", "llm-pilot", "--set", "gate_threshold=12"), "gate_threshold must lie in (0, 10]"),
        (("reproduce", "--preset", "llm-pilot", "--set", "flattery_cost=-1"), "flattery_cost must be >= 0"),
        (("reproduce", "--preset", "llm-pilot", "--set", "p_hacked_hard=0.5"), "p_correct_hard + p_hacked_hard"),
        (("reproduce", "--preset", "llm-pilot", "--set", "train_layers=31"), "train_layers must be an integer in [0, 30]"),
        (("reproduce", "--preset", "llm-pilot", "--set", "no_knob=1"), "unknown key 'no_knob'"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, needle):
    out = run(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert needle in lines[0]
    assert "Traceback" not in out.stderr


def test_theory_check_select_and_json(tmp_path, capsys):
    path = tmp_path / "rows.json"
    code = cli.main(["theory", "check", "--select", "lemma1", "--json", str(path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "lemma1.kappa" in printed and "PASS" in printed
    rows = json.loads(path.read_text())
    assert {r["id"] for r in rows} == {"lemma1.kappa", "lemma1.kappa_bregman", "lemma1.bound"}
    assert all(r["passed"] for r in rows)


def test_unwritable_or_foreign_output_paths_are_refused_before_any_work(tmp_path):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    mine = tmp_path / "my_folder"
    mine.mkdir()
    (mine / "report.md").write_text("my own notes")
    store = tmp_path / "run_store"  # a run folder holding only an LLM run store is ours (resume from records)
    (store / "llm").mkdir(parents=True)
    (store / "llm" / "config.json").write_text(json.dumps({"hash": "0", "config": {"seed": 7}}))
    cases = [
        (("reproduce", "--preset", "llm", "--out", str(store), "--finished-only"), "holds no LLM run of this configuration"),
        (("reproduce", "--out", str(afile)), "is a file, not a folder"),
        (("reproduce", "--out", str(afile / "sub")), "which is a file"),
        (("reproduce", "--out", str(mine)), "not a murphyjax run folder"),
        (("theory", "check", "--json", str(tmp_path / "missing" / "x.json")), "does not exist"),
        (("theory", "check", "--json", str(tmp_path)), "is a folder, not a file"),
    ]
    for args, needle in cases:
        out = run(*args)
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, out.stderr)
        assert "Traceback" not in out.stderr
    assert (mine / "report.md").read_text() == "my own notes"  # untouched


def test_max_minutes_below_the_cost_of_one_unit_is_refused(tmp_path):
    """A run folder whose shortest finished unit took 3 minutes cannot continue in 1 minute."""
    from murphyjax.experiments.llm.config import config_hash, llm_preset

    cfg = llm_preset("llm-pilot")
    (tmp_path / "llm" / "flattery").mkdir(parents=True)
    (tmp_path / "llm" / "config.json").write_text(json.dumps({"hash": config_hash(cfg), "config": cfg.to_json()}))
    (tmp_path / "llm" / "flattery" / "run_dpo_base_s0.json").write_text(json.dumps({"seconds": 180.0}))
    out = run("reproduce", "--preset", "llm-pilot", "--out", str(tmp_path), "--max-minutes", "1")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "--max-minutes 1 is below the cost of one unit" in out.stderr and ">= 3.0" in out.stderr


def _unwritable_folder(tmp_path):
    """A folder nothing can be created in, for root too: read-only permissions for a user, /proc for root
    (a pseudo file system that refuses new entries whatever the permissions)."""
    if os.geteuid() == 0:
        return pathlib.Path("/proc")
    ro = tmp_path / "read_only"
    ro.mkdir()
    ro.chmod(0o500)
    return ro


def _paths(tmp_path):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    ro = _unwritable_folder(tmp_path)
    name = f"murphyjax-test-{os.getpid()}"
    return {"file": afile, "under_file": afile / "sub", "unwritable": ro / name, "long_name": tmp_path / ("x" * 300),
            "dangling": tmp_path / "dangling", "folder": tmp_path, "missing_folder": tmp_path / "missing" / "x.json",
            "unwritable_file": pathlib.Path("/proc/version") if os.geteuid() == 0 else None}


OUTPUT_PATH_CASES = [
    (("reproduce", "--set", "seeds=0", "--out", "{file}"), "is a file, not a folder"),
    (("reproduce", "--set", "seeds=0", "--out", "{under_file}"), "which is a file"),
    (("reproduce", "--set", "seeds=0", "--out", "{unwritable}"), "cannot be created in"),
    (("reproduce", "--set", "seeds=0", "--out", "{long_name}"), "bytes; at most"),
    (("reproduce", "--set", "seeds=0", "--out", "{dangling}"), "is a broken symbolic link"),
    (("reproduce", "--preset", "llm", "--out", "{unwritable}"), "cannot be created in"),
    (("theory", "check", "--json", "{missing_folder}"), "the folder"),
    (("theory", "check", "--json", "{folder}"), "is a folder, not a file"),
    (("theory", "check", "--json", "{under_file}"), "which is a file"),
    (("theory", "check", "--json", "{unwritable}"), "cannot be created in"),
    (("theory", "check", "--json", "{unwritable_file}"), "cannot be written"),
    (("theory", "check", "--json", ""), "--json: the path is empty"),
    (("models", "fetch", "smollm2-135m", "--force", "--cache-dir", "{file}"), "--cache-dir: "),
    (("models", "fetch", "smollm2-135m", "--force", "--cache-dir", "{under_file}"), "which is a file"),
    (("models", "fetch", "smollm2-135m", "--force", "--cache-dir", "{unwritable}"), "cannot be created in"),
]


def _no_work(*args, **kwargs):
    raise AssertionError("work started before the paths were checked")


@pytest.mark.parametrize("args, needle", OUTPUT_PATH_CASES)
def test_every_output_path_is_checked_before_any_work(tmp_path, monkeypatch, capsys, args, needle):
    """Refused with one line and exit code 2, no traceback, before the command computes anything."""
    import murphyjax.experiments.reproduce
    import murphyjax.llm.fetch
    import murphyjax.theory.checks

    monkeypatch.setattr(murphyjax.theory.checks, "run_all", _no_work)
    monkeypatch.setattr(murphyjax.experiments.reproduce, "cli", _no_work)
    monkeypatch.setattr(murphyjax.llm.fetch, "cli_fetch", _no_work)
    paths = _paths(tmp_path)
    if os.geteuid() != 0 and "{unwritable_file}" in args:
        ro = tmp_path / "read_only.json"
        ro.write_text("[]")
        ro.chmod(0o400)
        paths["unwritable_file"] = ro
    argv = [a.format(**paths) for a in args]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


def test_the_default_run_folder_is_checked_too(tmp_path, monkeypatch, capsys):
    import murphyjax.experiments.reproduce

    monkeypatch.setattr(murphyjax.experiments.reproduce, "cli", _no_work)
    monkeypatch.chdir(_unwritable_folder(tmp_path))
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--out (default runs/ in the current folder): runs cannot be created in" in err, err


def test_a_writable_output_path_is_left_as_it_was(tmp_path, capsys):
    out = tmp_path / "rows.json"
    out.write_text("old")
    cli._writable_target("--json", str(out), folder=False)
    cli._writable_target("--out", str(tmp_path / "new" / "run"), folder=True)
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["rows.json"]


@pytest.mark.parametrize("error, code, line", [
    (PermissionError(13, "Permission denied", "/x/report.md"), 1, "murphyjax: error: Permission denied: /x/report.md"),
    (cli.UsageError("--seed: bad"), 2, "murphyjax: error: --seed: bad"),
])
@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_errors_are_one_line_and_debug_adds_the_traceback(monkeypatch, capsys, error, code, line, debug):
    import murphyjax.theory.checks

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(murphyjax.theory.checks, "run_all", fail)
    for argv in ([*debug, "theory", "check"], ["theory", "check", *debug]):  # --debug before or after the command
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == code
        assert err.strip().splitlines()[-1].startswith(line), err
        assert ("Traceback" in err) == bool(debug), err
        if not debug:
            assert len(err.strip().splitlines()) == 1, err


def test_a_malformed_model_file_is_one_line(monkeypatch, capsys):
    from murphyjax.llm.weights import ModelFileError

    def fail(args):
        raise ModelFileError("/m/model.safetensors: truncated")

    import murphyjax.llm.fetch

    monkeypatch.setattr(murphyjax.llm.fetch, "cli_fetch", fail)
    monkeypatch.setattr(murphyjax.llm.fetch, "cached_path", lambda name, cache=None: pathlib.Path("/"))
    with pytest.raises(SystemExit) as e:
        cli.main(["models", "fetch", "smollm2-135m"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("murphyjax: error: /m/model.safetensors: truncated") and \
        len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("preset, item, needle", [
    ("llm", "llm_judge=maybe", "--set llm_judge: cannot parse 'maybe' (expected true, false, 1 or 0)"),
    ("llm", "llm_judge=yes", "--set llm_judge: cannot parse 'yes' (expected true, false, 1 or 0)"),
    ("llm-pilot", "seeds=2.5", "--set seeds: cannot parse '2.5' (expected an integer)"),
    ("quick", "n_grid=64,1e3", "entry '1e3' is not one"),
    ("quick", "easy_eps=nan", "--set easy_eps: cannot parse 'nan' (expected a number or inf, never nan)"),
])
def test_set_values_are_parsed_strictly(tmp_path, monkeypatch, capsys, preset, item, needle):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.main(["reproduce", "--preset", preset, "--set", item])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
