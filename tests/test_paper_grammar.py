"""Caption grammar (issue 14): generated captions read correctly for zero, one and many."""
from probprune.experiments.base import fmt
from probprune.experiments.grammar import count, join_list, k_of_n, number_word, plural, rate_at_most, verb


def test_count_zero_one_many():
    assert count(0, "network") == "no networks"
    assert count(1, "network") == "one network"
    assert count(2, "network") == "two networks"
    assert count(72, "network") == "72 networks"
    assert count(1, "configuration") == "one configuration" and count(3, "proof", "proofs") == "three proofs"
    assert number_word(0, zero="zero") == "zero" and plural(0, "trial") == "trials" and plural(1, "trial") == "trial"
    assert verb(0, "lies", "lie") == "lie" and verb(1, "lies", "lie") == "lies" and verb(5, "lies", "lie") == "lie"


def test_k_of_n_avoids_zero_and_all_traps():
    assert k_of_n(0, 72, "network") == "none of the 72 networks"
    assert k_of_n(72, 72, "network") == "all 72 networks"
    assert k_of_n(1, 72, "network") == "1 of 72 networks"
    assert k_of_n(5, 72, "network") == "5 of 72 networks"
    assert k_of_n(0, 1, "network") == "none of the one network"
    assert k_of_n(1, 1, "network") == "the one network"
    assert k_of_n(0, 0, "network") == "no networks"


def test_rate_and_lists():
    assert rate_at_most(0.0, "the event", fmt) == "the event never failed"
    assert rate_at_most(0.0125, "the event", fmt) == "the event failed at rate at most 0.013"
    assert join_list([]) == "" and join_list(["a"]) == "a" and join_list(["a", "b"]) == "a and b"
    assert join_list(["a", "b", "c"]) == "a, b and c"


def test_captions_use_the_grammar():
    """The captions that read wrongly in the reviewed build (Figs. 2, 3, 5) now go through these helpers."""
    import inspect

    from probprune.experiments import mc_figures, theory_figures

    src = inspect.getsource(mc_figures.bound_bracket) + inspect.getsource(mc_figures.coverage)
    assert "k_of_n(" in src and "rate_at_most(" in src
    assert "in {above_cert} of them" not in src and "failed at rate at most {numbers" not in src
    assert "min_points" in inspect.getsource(theory_figures.width_condition)
