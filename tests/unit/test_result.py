"""Result statuses are one enum whose members are the words users see."""
from __future__ import annotations

import json

from app.core.errors import DiskFullError, HubError, NotPublishedError, NotReady, PackageError, Rejected
from app.core.result import FAIL_STATUSES, OK_STATUSES, Status, SyncResult


def test_statuses_are_plain_words_everywhere() -> None:
    assert json.dumps({"status": Status.STALE_PACKAGE}) == '{"status": "stale_package"}'
    assert f"{Status.UP_TO_DATE}" == "up_to_date" and Status.SUCCESS == "success"
    assert set(OK_STATUSES).isdisjoint(FAIL_STATUSES)
    assert set(OK_STATUSES) | set(FAIL_STATUSES) | {Status.NEVER_SYNCED} == set(Status)


def test_errors_carry_their_status() -> None:
    assert PackageError("x").status is Status.EXTRACT_FAILED
    assert HubError("x").status is Status.DOWNLOAD_FAILED
    assert NotPublishedError("x").status is Status.NOT_FOUND
    assert Rejected("x").status is Status.REJECTED
    assert NotReady("x", Status.STALE_PACKAGE).status is Status.STALE_PACKAGE
    assert DiskFullError("x").status is Status.EXTRACT_FAILED


def test_the_original_api_shape() -> None:
    ok, failed = SyncResult.ok("ds", Status.SUCCESS), SyncResult.failed("ds", Status.ERROR, "boom")
    assert (ok.success, ok.status, str(ok)) == (True, "success", "SyncResult(ds: success)")
    assert (failed.success, failed.status, str(failed)) == (False, "error", "SyncResult(ds: error - boom)")
