"""Slurm's ``--constraint`` grammar, so that a feature expression is checked on load.

A constraint reaches Slurm through three submitters (the rendered ``#SBATCH`` line, the
Snakemake executor plugin's ``-C`` resource, submitit's ``#SBATCH --constraint=``), each of
which quotes it; the check here makes sure the value *is* a feature expression, so that what
Slurm receives is what the user meant and nothing else. The grammar is the one both Slurm
22.05 (``build_feature_list``, src/slurmctld/job_scheduler.c) and current Slurm
(``_feature_string2list``) accept; the stricter rules of the newer one are applied::

    expr   := term (OP term)*                    OP := "&" | "|" | ","   ("," means "&")
    term   := NAME count? | "(" group ")" count? | "[" bracket "]"
    group  := NAME (OP NAME)*                    (no counts, no nesting)
    bracket:= bterm ("&" bterm)+, every bterm counted | bterm ("|" bterm)+, none counted
    bterm  := NAME count? | "(" group ")" count?
    count  := "*" [1-9][0-9]*

with at most one ``[...]`` group, and a count outside brackets only when the expression is a
single term (Slurm refuses ``a*2&b``). Feature names are conservative: letters, digits and
``_ . : + -`` (slurm.conf allows "arbitrary strings" but a comma, an operator, a space, a quote
or ``#`` cannot be one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, NoReturn

from pydantic import AfterValidator

GRAMMAR = (
    "a Slurm feature expression: feature names (letters, digits, _ . : + -) joined by & (and), "
    "| (or) or ',' (and); one level of ( ) grouping; counts as name*N or (group)*N on a single "
    "term; at most one [ ] group of counted &-terms or uncounted |-terms (sbatch --constraint)"
)
_TOKEN = re.compile(r"[A-Za-z0-9_.:+-]+|\*[1-9][0-9]*|[&|,()\[\]]")


class ConstraintSyntaxError(ValueError):
    """Not a feature expression; the message says where and why."""


@dataclass(frozen=True)
class _Term:
    counted: bool


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[int, str]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                self.fail(pos, f"character {text[pos]!r} cannot appear in a constraint")
            self.tokens.append((pos, match.group()))
            pos = match.end()
        self.i = 0
        self.brackets = 0

    def fail(self, pos: int, why: str) -> NoReturn:
        raise ConstraintSyntaxError(f"{why} (at position {pos + 1})")

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def where(self) -> int:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else len(self.text)

    def take(self) -> str:
        token = self.tokens[self.i][1]
        self.i += 1
        return token

    def name(self) -> None:
        token = self.peek()
        if token is None or not _is_name(token):
            self.fail(self.where(), "a feature name was expected")
        self.take()

    def count(self) -> bool:
        token = self.peek()
        if token is not None and token.startswith("*"):
            self.take()
            return True
        return False

    def group(self) -> None:
        """``( NAME (OP NAME)* )``, the opening bracket taken."""
        self.name()
        while self.peek() in ("&", "|", ","):
            self.take()
            self.name()
        if self.peek() != ")":
            self.fail(self.where(), "')' expected: a ( ) group holds features and operators only")
        self.take()

    def bterm(self) -> _Term:
        if self.peek() == "(":
            self.take()
            self.group()
        else:
            self.name()
        return _Term(counted=self.count())

    def bracket(self) -> None:
        """``[ ... ]``, the opening bracket taken."""
        start = self.where()
        terms = [self.bterm()]
        ops = set()
        while self.peek() in ("&", "|", ","):
            ops.add("|" if self.take() == "|" else "&")
            terms.append(self.bterm())
        if self.peek() != "]":
            self.fail(self.where(), "']' expected")
        self.take()
        if len(terms) < 2 or len(ops) != 1:
            self.fail(start, "a [ ] group joins two or more terms with one operator, & or |")
        if ops == {"&"} and not all(t.counted for t in terms):
            self.fail(start, "every term of an &-joined [ ] group needs a count (name*N)")
        if ops == {"|"} and any(t.counted for t in terms):
            self.fail(start, "the terms of a |-joined [ ] group take no count")

    def term(self) -> bool:
        """One term; True when it carries a count."""
        token = self.peek()
        if token == "[":
            self.brackets += 1
            if self.brackets > 1:
                self.fail(self.where(), "Slurm allows one [ ] group per constraint")
            self.take()
            self.bracket()
            return False
        if token == "(":
            self.take()
            self.group()
        else:
            self.name()
        return self.count()

    def expression(self) -> None:
        if not self.tokens:
            self.fail(0, "the constraint is empty")
        counted = [self.term()]
        while self.peek() in ("&", "|", ","):
            self.take()
            counted.append(self.term())
        if self.peek() is not None:
            self.fail(self.where(), f"{self.peek()!r} was not expected here")
        if any(counted) and len(counted) > 1:
            self.fail(0, "a count outside [ ] is allowed only on a constraint of one term")


def _is_name(token: str) -> bool:
    return bool(token) and not token.startswith("*") and token not in "&|,()[]"


def check_constraint(text: str) -> None:
    """Raise ``ConstraintSyntaxError`` unless ``text`` is a Slurm feature expression."""
    _Parser(text).expression()


def _feature_expression(text: str) -> str:
    """The config field's validator: the value unchanged, or a ``ValueError`` whose message
    says where the expression goes wrong and what the grammar is (the loader adds the file,
    the field and the value)."""
    try:
        check_constraint(text)
    except ConstraintSyntaxError as exc:
        raise ValueError(f"{exc}; allowed: {GRAMMAR}") from None
    return text


SlurmConstraint = Annotated[str, AfterValidator(_feature_expression)]
"""A config field holding a Slurm feature expression (``cluster.constraint``). Checked by the
grammar rather than a JSON Schema pattern, so that every refusal, a stray character included,
says what a feature expression is."""
