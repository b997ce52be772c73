"""echorec: sequential recommendation in PyTorch (EchoMamba4Rec, Mamba4Rec, SASRec, ...)."""

from echorec.errors import EchorecError

__version__ = "0.1.0"
__all__ = ["EchorecError", "__version__"]
