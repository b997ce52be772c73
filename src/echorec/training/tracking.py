"""Where a run's progress goes besides the terminal: the run folder's train.log (always), and TensorBoard or
MLflow (`--logger`, optional extras) with per-epoch loss, lr, times and valid metrics, the config as
parameters and the final metrics.

    --logger tensorboard   event files in RUN/tensorboard/  (tensorboard --logdir RUN/tensorboard)
    --logger mlflow        $MLFLOW_TRACKING_URI, else a local store RUN/mlflow.db (no server):
                           mlflow ui --backend-store-uri sqlite:///RUN/mlflow.db

A logger that is not installed is one line naming the extra to install, before anything is trained.
"""

from __future__ import annotations

import os
import re
import sys
import time

from echorec.errors import EchorecError
from echorec.runfolder import LOG, MLFLOW_DB, TENSORBOARD, RunFolder


def check_logger(name: str) -> None:
    """Fail early, in one line, when the chosen logger's package is missing."""
    need = {"tensorboard": ("torch.utils.tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
    if name in need:
        module, extra = need[name]
        try:
            __import__(module)
        except ImportError:
            raise EchorecError(f"--logger {name} needs the {extra} package: pip install 'echorec[{extra}]'") from None


def preflight(name: str, folder: str) -> None:
    """Before anything is written: an MLflow store the run can reach, in one short try (no minutes of retries),
    and a local store path that stays inside the run folder."""
    if name != "mlflow":
        return
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        if any(c in os.path.abspath(folder) for c in "?#%"):
            raise EchorecError(f"--logger mlflow: the run folder's path holds ?, # or %, which a sqlite URI would cut "
                               f"short (the store would land outside {folder}); rename it or set MLFLOW_TRACKING_URI")
        return
    import mlflow

    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    try:
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as e:
        raise EchorecError(f"--logger mlflow: cannot reach MLFLOW_TRACKING_URI {uri} ({type(e).__name__}); nothing "
                           "was written") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _metric_name(key: str) -> str:
    # MLflow names allow letters, digits, _ - . / and spaces: ndcg@10 -> ndcg_at_10.
    return re.sub(r"[^\w\-./ ]", "_", key.replace("@", "_at_"))


class Tracker:
    """Fans one run's events out to train.log and the chosen logger (rank 0 only; others get `Tracker(None)`)."""

    def __init__(self, folder: str | None, logger: str = "none", run_name: str = "", params: dict | None = None):
        self.folder, self.logger = folder, logger
        self._tb = self._mlflow = None
        if folder is None:
            return
        os.makedirs(folder, exist_ok=True)
        run = RunFolder(folder)
        self._log = open(run.file(LOG), "a", encoding="utf-8")
        if logger == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(run.file(TENSORBOARD))
            self._tb.add_text("config", "\n".join(f"    {k} = {v}" for k, v in (params or {}).items()))
        elif logger == "mlflow":
            import mlflow

            uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///" + os.path.abspath(run.file(MLFLOW_DB))
            self._mlflow = mlflow.MlflowClient(tracking_uri=uri)
            exp = self._mlflow.get_experiment_by_name("echorec")
            exp_id = exp.experiment_id if exp else self._mlflow.create_experiment("echorec")
            self._mlflow_run = self._mlflow.create_run(exp_id, run_name=run_name).info.run_id
            for k, v in (params or {}).items():
                self._mlflow.log_param(self._mlflow_run, k, "" if v is None else str(v)[:6000])

    def line(self, msg: str) -> None:
        """One line of what the run printed, time-stamped, into train.log."""
        if self.folder is not None:
            self._log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
            self._log.flush()

    def epoch(self, row: dict) -> None:
        """An epoch's history row (epoch, loss, lr, seconds, eval_seconds, valid_*) to the logger."""
        step = int(row["epoch"])
        values = {k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))}
        if self._tb is not None:
            for k, v in values.items():
                tag = "valid/" + k[len("valid_"):] if k.startswith("valid_") else f"train/{k}"
                self._tb.add_scalar(tag, v, step)
            self._tb.flush()
        if self._mlflow is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self._mlflow.log_batch(self._mlflow_run, metrics=[Metric(_metric_name(k), v, now, step)
                                                              for k, v in values.items()])

    def final(self, metrics: dict) -> None:
        """The run's valid/test metrics (metrics.json) to the logger."""
        # valid_* holds every epoch's figures; the selected epoch's go to best_valid_*.
        rows = [(prefix, k, float(v)) for split, prefix in (("valid", "best_valid"), ("test", "test"))
                for k, v in (metrics.get(split) or {}).items()]
        if self._tb is not None:
            for prefix, k, v in rows:
                self._tb.add_scalar(f"{prefix}/{k}", v, int(metrics.get("best_epoch", 0)))
            self._tb.flush()
        if self._mlflow is not None:
            for prefix, k, v in rows:
                self._mlflow.log_metric(self._mlflow_run, _metric_name(f"{prefix}_{k}"), v)

    def close(self, status: str = "FINISHED") -> None:
        if self.folder is None:
            return
        if self._tb is not None:
            self._tb.close()
        if self._mlflow is not None:
            self._mlflow.set_terminated(self._mlflow_run, status=status)
        self._log.close()
        self.folder = None


def say(tracker: Tracker | None, msg: str, quiet: bool = False) -> None:
    """Print a progress line to stderr (unless quiet) and keep it in train.log."""
    if not quiet:
        print(msg, file=sys.stderr, flush=True)
    if tracker is not None:
        tracker.line(msg)
