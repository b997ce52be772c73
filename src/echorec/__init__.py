"""echorec: sequential recommendation in PyTorch (EchoMamba4Rec, Mamba4Rec, SASRec, ...).

    import echorec
    run = echorec.train(model="sasrec", dataset="ml-100k", epochs=3, out="runs/demo")
    run.recommend(["242", "302"], k=10)
    echorec.load_run("runs/demo").evaluate()

`echorec.register("name")` adds a model class (see the model contract in echorec.models.base); models
of other packages join through the `echorec.models` entry-point group. The names below are imported
on first use, so `import echorec` stays light. (The training code itself is the package echorec.training.)
"""

from echorec.errors import EchorecError
from echorec.version import __version__

__all__ = ["EchorecError", "Run", "__version__", "evaluate", "export", "load_run", "make_config", "predict", "recommend",
           "register", "train"]

_API = ("train", "load_run", "make_config", "Run", "evaluate", "export", "recommend", "predict")
_LAZY = {**{name: "echorec.api" for name in _API}, "register": "echorec.models"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'echorec' has no attribute {name!r}")
