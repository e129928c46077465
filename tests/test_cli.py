"""The murphyjax console command: help, exit codes, one-line errors."""

import json
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
