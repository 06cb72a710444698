"""Slurm's --constraint grammar (evalwatt.config.slurm_constraint): what sbatch accepts passes,
anything else is refused with where and why."""

from __future__ import annotations

import pytest

from evalwatt.config.slurm_constraint import ConstraintSyntaxError, check_constraint

VALID = [
    "h100",
    "h100&a",
    "h100|a",
    "h100,a",
    "h100&(a|b)",
    "(a|b)&h100",
    "intel&gpu:h100",
    "v100-32g",
    "h100*2",
    "(a|b)*2",
    "[rack1|rack2|rack3]",
    "[rack1*2&rack2*4]",
    "h100&[rack1|rack2]",
    "[(a|b)*2&c*1]",
]

INVALID = [
    ("", "empty"),
    ("h100 a", "character ' '"),
    ("h100;touch x", "character ';'"),
    ("$(touch x)", "character '$'"),
    ("`id`", "character '`'"),
    ("h100\nid", "character '\\n'"),
    ("'h100'", 'character "\'"'),
    ("h100#x", "character '#'"),
    ("h100&", "a feature name was expected"),
    ("&h100", "a feature name was expected"),
    ("h100&&a", "a feature name was expected"),
    ("(a|b", "')' expected"),
    ("a|b)", "')' was not expected"),
    ("((a|b)&c)", "a feature name was expected"),
    ("(a*2|b)", "')' expected"),
    ("a*0", "character '*'"),
    ("a*2&b", "a count outside [ ] is allowed only"),
    ("[a|b]&[c|d]", "one [ ] group"),
    ("[a]", "two or more terms"),
    ("[a&b]", "needs a count"),
    ("[a*2|b]", "take no count"),
    ("[a*1&b*1|c]", "one operator"),
    ("([a|b])", "a feature name was expected"),
]


@pytest.mark.parametrize("text", VALID)
def test_slurm_feature_expressions_pass(text: str) -> None:
    check_constraint(text)


@pytest.mark.parametrize(("text", "why"), INVALID)
def test_anything_else_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ConstraintSyntaxError) as error:
        check_constraint(text)
    assert why in str(error.value)
    assert "position" in str(error.value)
