"""Import every experiment module once so that they register themselves."""
from . import mc_figures  # noqa: F401
from . import theory_figures  # noqa: F401
from . import trained  # noqa: F401
from . import repro_elcheairi  # noqa: F401
from . import repro_imp  # noqa: F401
from . import repro_edgepopup  # noqa: F401
