"""The worker's changes to Celery's defaults: what they keep and what they drop."""

from __future__ import annotations

import sys

from billiard.einfo import ExceptionInfo
from celery import Celery
from celery.app import trace
from celery.exceptions import Ignore

from faceswap_jobs.worker.tuning import SemiPredicateInfo, tune_worker


def _deep(exc: BaseException, depth: int) -> None:
    if depth:
        _deep(exc, depth - 1)
    raise exc


def _info_of(exc: BaseException) -> ExceptionInfo:
    try:
        _deep(exc, 5)
    except BaseException:
        return SemiPredicateInfo(internal=True)
    raise AssertionError("not raised")


def test_an_ignore_keeps_its_exception_but_no_traceback_copy() -> None:
    info = _info_of(Ignore("handed on"))
    assert info.type is Ignore
    assert isinstance(info.exception.exc, Ignore)
    assert (info.tb, info.traceback, info.internal) == (None, "", True)
    assert info.exc_info[0] is Ignore


def test_any_other_exception_keeps_its_full_traceback() -> None:
    info = _info_of(ValueError("broken"))
    assert info.type is ValueError
    assert "in _deep\n    raise exc" in info.traceback
    assert "ValueError: broken" in info.traceback
    assert info.tb is not None


def test_explicit_exc_info_is_honoured() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        exc_info = sys.exc_info()
    info = SemiPredicateInfo(exc_info)  # type: ignore[arg-type]
    assert info.type is KeyError and "KeyError" in info.traceback


def test_tune_worker_shares_the_backend_and_installs_the_cheap_info() -> None:
    app = Celery("tuning-test", backend="cache+memory://")
    original = trace.ExceptionInfo
    try:
        tune_worker(app)
        assert app.conf.result_backend_thread_safe is True
        assert trace.ExceptionInfo is SemiPredicateInfo
    finally:
        trace.ExceptionInfo = original
