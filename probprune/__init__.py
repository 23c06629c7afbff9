"""probprune: explicit-constant probabilistic pruning bounds, pruning methods and their Monte Carlo tests.

Setting and notation follow ``THEORY.md`` (shipped as docs/THEORY.md): a network
F(x) = W_l s(W_{l-1} ... s(W_1 x)), no biases, inputs in the unit ball, error
sup_{||x||<=1} ||F(x) - F_pruned(x)||_2.
"""
from .errors import ProbPruneError, UnsupportedLayerError, HypothesisError

__version__ = "0.1.0"
__all__ = ["ProbPruneError", "UnsupportedLayerError", "HypothesisError", "__version__"]
