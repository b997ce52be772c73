"""Registered models; importing this package registers them all."""

from echorec.models import bert4rec, bsarec, echomamba4rec, fmlprec, gru4rec, mamba4rec, narm, sasrec  # noqa: F401
