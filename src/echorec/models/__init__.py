"""Registered models; importing this package registers them all."""

from echorec.models import echomamba4rec, mamba4rec, sasrec  # noqa: F401
