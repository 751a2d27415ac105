"""The package version (one home, so that any module may import it without the package root)."""

__version__ = "0.1.0.dev0"
