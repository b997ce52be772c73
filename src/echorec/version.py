"""echorec's version: a leaf module (no imports), read by the package, the run folder's meta and the build."""

__version__ = "0.1.0"
