"""Errors survive Celery's JSON result backend and our job store unchanged."""

from __future__ import annotations

import pickle

import pytest
from celery import Celery

from faceswap_jobs.errors import ERROR_TYPES, FaceSwapError, RateLimitedError, error_from_dict


@pytest.fixture(scope="module")
def json_backend():
    app = Celery("roundtrip", broker="memory://", backend="cache+memory://")
    app.conf.result_serializer = "json"
    return app.backend


def _sample(cls: type[FaceSwapError]) -> FaceSwapError:
    return cls("something failed", 503, "api_error", "trace-1", 2.5, "<html>")


@pytest.mark.parametrize("cls", list(ERROR_TYPES.values()), ids=list(ERROR_TYPES))
def test_rebuild_from_args(cls: type[FaceSwapError]) -> None:
    error = _sample(cls)
    rebuilt = type(error)(*error.args)
    assert rebuilt.args == error.args
    assert str(rebuilt) == "[503 api_error] something failed (trace_id=trace-1)"


@pytest.mark.parametrize("cls", list(ERROR_TYPES.values()), ids=list(ERROR_TYPES))
def test_round_trip_through_celery_json_backend(json_backend, cls: type[FaceSwapError]) -> None:
    error = _sample(cls)
    stored = json_backend.prepare_exception(error, "json")
    rebuilt = json_backend.exception_to_python(stored)
    assert type(rebuilt) is cls
    assert rebuilt.args == error.args
    assert (rebuilt.status, rebuilt.code, rebuilt.trace_id) == (503, "api_error", "trace-1")


@pytest.mark.parametrize("cls", list(ERROR_TYPES.values()), ids=list(ERROR_TYPES))
def test_round_trip_through_the_job_store_format(cls: type[FaceSwapError]) -> None:
    error = _sample(cls)
    rebuilt = error_from_dict(error.to_dict())
    assert type(rebuilt) is cls
    assert rebuilt.args == error.args


def test_pickles_too() -> None:
    error = RateLimitedError("slow down", 429, "too_many_requests", "t", 3.0)
    assert pickle.loads(pickle.dumps(error)).retry_after_s == 3.0


def test_unknown_stored_type_falls_back_to_the_root() -> None:
    rebuilt = error_from_dict({"type": "os.system", "message": "x", "code": "c"})
    assert type(rebuilt) is FaceSwapError
    assert rebuilt.code == "c"
