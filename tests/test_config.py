import pytest

from echorec.config import DataConfig, EvalConfig, RunConfig, from_dict, run_config_from_dict, run_config_to_dict
from echorec.errors import EchorecError
from echorec.models.sasrec import SASRecConfig


def test_round_trip():
    rc = RunConfig(model="sasrec", model_cfg=SASRecConfig(hidden=32))
    rc.eval.ks = [1, 10]
    back = run_config_from_dict(run_config_to_dict(rc))
    assert back.model_cfg.hidden == 32 and back.eval.ks == [1, 10] and back.data == rc.data


def test_unknown_and_mistyped_keys():
    with pytest.raises(EchorecError, match="unknown key"):
        from_dict(DataConfig, {"maxlen": 3})
    with pytest.raises(EchorecError, match="expected int"):
        from_dict(DataConfig, {"max_len": "3.5"})
    assert from_dict(DataConfig, {"min_rating": "none"}).min_rating is None
    assert from_dict(EvalConfig, {"ks": "5,10", "exclude_history": "true"}).ks == [5, 10]
