"""Import every experiment module once so that they register themselves."""
from probprune.experiments import mc_figures  # noqa: F401
from probprune.experiments import theory_figures  # noqa: F401
from probprune.experiments import trained  # noqa: F401
from probprune.experiments import repro_elcheairi  # noqa: F401
from probprune.experiments import repro_imp  # noqa: F401
from probprune.experiments import repro_edgepopup  # noqa: F401
