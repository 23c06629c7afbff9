"""Tighter certificates for trained networks (THEORY.md §12 [D]): exact composition of linear operations,
bound propagation on the difference network F - F_hat (coupled, one graph), data-region certificates and
certified prediction stability."""
