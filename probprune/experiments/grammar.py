"""Caption grammar for generated figure captions (issue 14): counts that read correctly for zero, one and many.

The captions of the paper are written by the experiments from their own results. Templates such as "in {k} of
them X" read wrongly when k = 0 ("in 0 of them Cert-D lies above the bound" meant that *all* were certified), and
"failed at rate at most 0" hides that the event never happened. These helpers choose the wording from the count;
``tests/test_paper_grammar.py`` checks the 0 / 1 / many cases of each.
"""
from __future__ import annotations

_WORDS = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
          9: "nine", 10: "ten"}


def number_word(n: int, zero: str = "no") -> str:
    """'no' (or ``zero``), 'one' ... 'ten', then digits."""
    n = int(n)
    if n == 0:
        return zero
    return _WORDS.get(n, str(n))


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """The noun form for count n: 'network' for 1, 'networks' otherwise (including 0)."""
    return singular if int(n) == 1 else (plural_form or singular + "s")


def count(n: int, singular: str, plural_form: str | None = None, zero: str = "no") -> str:
    """'no networks', 'one network', 'two networks', '12 networks'."""
    return f"{number_word(n, zero)} {plural(n, singular, plural_form)}"


def verb(n: int, singular: str, plural_form: str) -> str:
    """Verb agreement: verb(1, 'lies', 'lie') = 'lies'; verb(0 or 2, ...) = 'lie'."""
    return singular if int(n) == 1 else plural_form


def k_of_n(k: int, n: int, singular: str, plural_form: str | None = None) -> str:
    """A part of a whole without the '0 of 72' / '72 of 72' traps: 'none of the 72 networks', 'the one network'
    / 'all 72 networks', '1 of 72 networks', '5 of 72 networks'."""
    k, n = int(k), int(n)
    if n == 0:
        return f"no {plural(0, singular, plural_form)}"
    if k == 0:
        return "none of the " + ("one " + singular if n == 1 else f"{n} {plural(n, singular, plural_form)}")
    if k == n:
        return "the one " + singular if n == 1 else f"all {n} {plural(n, singular, plural_form)}"
    return f"{k} of {n} {plural(n, singular, plural_form)}"


def rate_at_most(rate: float, what: str, fmt_rate) -> str:
    """'<what> never failed' for a zero rate, '<what> failed at rate at most r' otherwise."""
    return f"{what} never failed" if float(rate) == 0 else f"{what} failed at rate at most {fmt_rate(rate)}"


def join_list(items) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [str(i) for i in items]
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]
