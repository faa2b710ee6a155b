"""Logging: text or JSON lines on stderr (and a file), the dataset on every line that concerns one."""
from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from app.core.secrets import RedactingFilter, redact

current_dataset: contextvars.ContextVar[str | None] = contextvars.ContextVar("dataset", default=None)
ROOT = "datahubsync"


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "dataset", None):
            record.dataset = current_dataset.get()
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        dataset = getattr(record, "dataset", None)
        where = f" [{dataset}]" if dataset else ""
        job = getattr(record, "job", None)
        if job is not None:
            stream = getattr(record, "stream", None)
            where += f" [job {job}{' ' + stream if stream else ''}]"
        text = f"{stamp} {record.levelname:<7}{where} {record.getMessage()}"
        if record.exc_info and logging.getLogger(ROOT).isEnabledFor(logging.DEBUG):
            text += "\n" + redact(self.formatException(record.exc_info))
        return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record.created)),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for key in ("dataset", "job", "stream", "status"):
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = value
        if record.exc_info and logging.getLogger(ROOT).isEnabledFor(logging.DEBUG):
            doc["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", file: str | None = None,
                  base_dir: Path | None = None, stream: TextIO | None = None) -> logging.Logger:
    """Configure the program's logger (idempotent: a second call replaces the handlers); `stream`
    is where lines go besides the file (default: the process's stderr)."""
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(getattr(logging, level.upper(), logging.INFO))
    logger.propagate = False
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    problem = None
    if file:
        path = Path(file)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(path, encoding="utf-8"))
        except OSError as exc:
            problem = f"cannot write the log file {path} ({exc.strerror or exc}); logging to stderr only"
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(ContextFilter())
        handler.addFilter(RedactingFilter())
        logger.addHandler(handler)
    if problem:
        logger.warning(problem)
    return logger


def dataset_logger(name: str) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(logging.getLogger(f"{ROOT}.sync"), {"dataset": name})
