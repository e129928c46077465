"""``--set KEY=VALUE`` parsing (experiments/common/overrides.py): each field's type, strictly, for both configs."""

import math

import pytest

from murphyjax.experiments.common.overrides import parse_overrides, parse_scalar
from murphyjax.experiments.lab.config import PRESETS
from murphyjax.experiments.llm.config import LLM_PRESETS

LAB, LLM, PILOT = PRESETS["quick"], LLM_PRESETS["llm"], LLM_PRESETS["llm-pilot"]


@pytest.mark.parametrize("text, typ, value", [
    ("true", bool, True), ("FALSE", bool, False), ("1", bool, True), ("0", bool, False), (" True ", bool, True),
    ("3", int, 3), ("-2", int, -2), ("+7", int, 7), ("007", int, 7),
    ("0.5", float, 0.5), (".5", float, 0.5), ("1e-3", float, 0.001), ("2", float, 2.0), ("-1.5E2", float, -150.0),
    ("inf", float, math.inf), ("-inf", float, -math.inf),
    ("js", str, "js"),
])
def test_values_of_each_type(text, typ, value):
    got = parse_scalar(text, typ)
    assert got == value and type(got) is typ


@pytest.mark.parametrize("text, typ", [
    ("maybe", bool), ("yes", bool), ("no", bool), ("2", bool), ("", bool), ("on", bool),
    ("3.5", int), ("1e3", int), ("inf", int), ("nan", int), ("1_000", int), ("0x10", int), ("", int), ("three", int),
    ("nan", float), ("NaN", float), ("1_0", float), ("0x10", float), ("infinity", float), ("1e999", float), ("", float),
    ("", str), ("  ", str),
])
def test_anything_else_is_refused(text, typ):
    with pytest.raises(ValueError, match="expected"):
        parse_scalar(text, typ)


@pytest.mark.parametrize("defaults, items, expected", [
    (LLM, ["seeds=3", "tasks=sycophancy,length", "llm_judge=false"],
     {"seeds": 3, "tasks": ("sycophancy", "length"), "llm_judge": False}),
    (LLM, ["alpha=0.2", "dpo_betas=0.1,1", "variant_methods="], {"alpha": 0.2, "dpo_betas": (0.1, 1.0),
                                                                  "variant_methods": ()}),
    (PILOT, ["kl_coefs=0,0.5"], {"kl_coefs": (0.0, 0.5)}),  # an empty preset tuple: the class default's type
    (PILOT, ["variant_tasks=flattery"], {"variant_tasks": ("flattery",)}),  # both empty: text
    (LAB, ["n_grid=64,128", "lam_grid=0,inf", "hard_mean=1,0,3", "seeds=4"],
     {"n_grid": (64, 128), "lam_grid": (0.0, math.inf), "hard_mean": (1.0, 0.0, 3.0), "seeds": 4}),
])
def test_overrides_take_each_fields_type(defaults, items, expected):
    got = parse_overrides(items, defaults)
    assert got == expected
    assert all(type(got[k]) is type(v) for k, v in expected.items())
    assert all(type(a) is type(b) for k, v in expected.items() if isinstance(v, tuple) for a, b in zip(got[k], v))


@pytest.mark.parametrize("defaults, item, message", [
    (LLM, "llm_judge=maybe", "--set llm_judge: cannot parse 'maybe' (expected true, false, 1 or 0)"),
    (LLM, "seeds=2.5", "--set seeds: cannot parse '2.5' (expected an integer)"),
    (LLM, "alpha=nan", "--set alpha: cannot parse 'nan' (expected a number or inf, never nan)"),
    (LLM, "model=", "--set model: cannot parse '' (expected a non-empty text)"),
    (LLM, "dpo_betas=0.1,,1", "--set dpo_betas: cannot parse '0.1,,1' (expected a comma list of numbers, no entry empty)"),
    (LLM, "dpo_betas=0.1,x", "--set dpo_betas: cannot parse '0.1,x' (expected a comma list of numbers; entry 'x' is not one)"),
    (LAB, "n_grid=64,1e3", "--set n_grid: cannot parse '64,1e3' (expected a comma list of integers; entry '1e3' is not one)"),
    (LAB, "seeds", "--set expects KEY=VALUE; got 'seeds'"),
    (LAB, "nope=1", "--set: unknown key 'nope' (known: "),
])
def test_a_bad_item_is_one_line_naming_the_key_and_what_is_allowed(defaults, item, message):
    with pytest.raises(ValueError) as e:
        parse_overrides([item], defaults)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_key_given_twice_is_refused():
    with pytest.raises(ValueError, match="--set seeds: given twice"):
        parse_overrides(["seeds=3", "seeds=4"], LAB)
