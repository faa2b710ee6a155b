"""A download running in the background, so extraction can start while the package still arrives.

The download fetches the package's tail first; once the ZIP's central directory is on disk the
package can be checked and its entries extracted as their bytes land. The SHA-256 is computed in
the same background thread right after the last byte, while extraction finishes.
"""
from __future__ import annotations

import threading
import zipfile
from typing import Any

from app.core.errors import DownloadError
from app.core.fsutil import sha256_file
from app.hub.download import Downloaded, PackageDownload

_zipfile: Any = zipfile     # its end-of-archive reader is private, so absent from its type stubs


class BackgroundDownload:
    def __init__(self, download: PackageDownload, stop: threading.Event):
        self.download = download
        self.stop = stop
        self._result: tuple[Downloaded, str] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="download")
        self._thread.start()

    def _run(self) -> None:
        try:
            got = self.download.run()
            self._result = (got, sha256_file(got.path, self.stop))
        except BaseException as exc:          # noqa: BLE001 - re-raised by result()
            self._error = exc

    def result(self) -> tuple[Downloaded, str]:
        """The finished download and its SHA-256 (raises what the download raised)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def running(self) -> bool:
        return self._thread.is_alive()

    def cancel(self) -> None:
        if self._thread.is_alive():
            self.download.cancel()
            self._thread.join()

    def wait_directory(self) -> bool:
        """True once the central directory is on disk while the rest still arrives; False when the
        download has finished first or cannot be read early (one stream, no ranges, small package)."""
        download = self.download
        download.planned.wait()
        tail = next((s for s in download.plan.segments if s.urgent), None)
        if tail is None or not self._thread.is_alive():
            self.result()
            return False
        total = download.plan.total or 0
        try:
            download.wait_for(tail.start, total)
            directory_at = self._directory_offset()
            if directory_at is None:
                self.result()
                return False
            download.wait_for(directory_at, total)
        except DownloadError:
            self.result()          # the download's own error explains it better
            raise
        return self._thread.is_alive()

    def _directory_offset(self) -> int | None:
        try:
            with open(self.download.part, "rb") as fh:
                record = _zipfile._EndRecData(fh)     # the stdlib's own end-of-archive reader
        except (OSError, zipfile.BadZipFile):
            return None
        if not record:
            return None
        offset: int = record[_zipfile._ECD_OFFSET]
        return offset
