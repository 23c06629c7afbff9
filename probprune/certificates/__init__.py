"""Tighter certificates for trained networks (THEORY.md §12 [D]); see docs/certificates.md.

* :mod:`.lower`: exact composition of the affine operations between ReLUs into a chain of dense stages, from a
  :class:`probprune.net.ir.Graph` (torch models are read by the one reader, ``graph.trace.from_torch``);
  residual networks via carried identity coordinates (§12.1).
* :mod:`.compose`: composed Lemma A, ReLU pair and S-procedure chain bounds, the backward unrolling (§12.1-§12.3).
* :mod:`.mixed`: the mixed and anchored bounds (Statements 12.8-12.9).
* :mod:`.propagate`: coupled bound propagation on F - F_hat as one graph, l2 norm of the error (§12.4).
* :mod:`.stability`: data-region sup error and certified prediction stability (§12.5).
* :mod:`.sdp`: the cross-network SDP certificate, multipliers from cvxpy + SCS re-certified in float64 (§12.6).
* :mod:`.certify`: one entry point (``certify_chains`` / ``certify_tight``; method "auto" = the minimum).

Lower bounds by attack (tests, benchmark) use the package's one PGD, :func:`probprune.measure.attack.pgd_sup_error`
(``center``/``radius``/``norm`` for data regions).
"""
