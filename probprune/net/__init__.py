"""The network graph (THEORY.md §8): one representation of a network behind every bound and certificate.

* :mod:`.ir` — :class:`Node`, :class:`Graph` (forward, weights by FQN, pruned copies, chains from specs);
* :mod:`.ops` — one class per operation, each with its forward and its step of the Lemma A recursion;
* :mod:`.trace` — :func:`from_torch`: ``torch.fx`` tracing of a module, refusals, forward verification;
* :mod:`.lemma` — Lemma A on graphs (§8.2), the one Lemma A composition of the package.
"""
from probprune.net.ir import Graph, Node
from probprune.net.lemma import GraphLemmaResult, lemma_a_chain, lemma_a_graph
from probprune.net.trace import from_torch

__all__ = ["Graph", "Node", "GraphLemmaResult", "lemma_a_chain", "lemma_a_graph", "from_torch"]
