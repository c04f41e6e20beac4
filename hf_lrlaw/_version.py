"""The package version (one place, read by the CLI and the records)."""

__version__ = "0.1.0"
