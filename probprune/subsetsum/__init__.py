"""Subset-sum lottery tickets (THEORY.md §4): exact subset-sum solver, MILP baseline, Lueker coverage estimates,
width formulas and the Pensia et al. / da Cunha et al. constructions."""
from probprune.subsetsum.solver import SubsetSumResult, brute_force, solve

__all__ = ["SubsetSumResult", "solve", "brute_force"]
