"""The version of d2debug (one place; the package, the fingerprint and the reports read it)."""
__version__ = "0.1.0"
