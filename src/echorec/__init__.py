"""echorec: sequential recommendation in PyTorch (EchoMamba4Rec, Mamba4Rec, SASRec, ...).

    import echorec
    run = echorec.train(model="sasrec", dataset="ml-100k", epochs=3, out="runs/demo")
    run.recommend(["242", "302"], k=10)
    echorec.load_run("runs/demo").evaluate()

`echorec.register("name")` adds a model class (see the model contract in echorec.models.base); models
of other packages join through the `echorec.models` entry-point group. The names below are imported
on first use, so `import echorec` stays light.
"""

import types

import echorec.train as _train_package  # its __init__ only: no torch yet
from echorec.errors import EchorecError


class _CallableTrain(types.ModuleType):
    """`echorec.train` is both the training package (echorec.train.loop, ...) and the API's train(): the
    package's name would shadow a plain function of that name, so calling the package calls it."""

    def __call__(self, *args, **kwargs):
        from echorec.api import train

        return train(*args, **kwargs)


_train_package.__class__ = _CallableTrain

__version__ = "0.1.0"
__all__ = ["EchorecError", "Run", "__version__", "load_run", "make_config", "register", "train"]
train = _train_package

_LAZY = {"load_run": "echorec.api", "make_config": "echorec.api", "Run": "echorec.api",
         "register": "echorec.models"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'echorec' has no attribute {name!r}")
