"""Registered models; importing this package registers them all."""

from echorec.models import sasrec  # noqa: F401
