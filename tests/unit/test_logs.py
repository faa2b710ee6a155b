"""Log lines and the tracebacks shown at DEBUG never carry a registered secret."""
from __future__ import annotations

import io
import json
import logging

import pytest

from app.core.logs import setup_logging
from app.core.secrets import remember

SECRET = "tok-traceback-4c3b2a19"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_traceback_at_debug_is_redacted(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    remember(SECRET)
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger("datahubsync")
    saved = (list(root.handlers), root.level, root.propagate)
    logger = setup_logging("DEBUG", fmt)
    try:
        try:
            raise RuntimeError(f"the hub echoed {SECRET} back")
        except RuntimeError:
            logger.debug("detail", exc_info=True)
        text = stream.getvalue()
        assert "RuntimeError" in text and "***" in text
        assert SECRET not in text
        if fmt == "json":
            assert SECRET not in json.loads(text.splitlines()[0])["traceback"]
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        root.handlers[:], root.level, root.propagate = saved   # as other tests expect to find it
