"""CLI commands (placeholder until implemented)."""
from . import app  # noqa: F401
