"""Package identity (docs/hub-api.md section 2): ETag, else Last-Modified, else Content-Disposition filename + length."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping

_FILENAME = re.compile(r"""filename\*?=(?:UTF-8'')?"?([^";]+)"?""", re.I)
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$", re.I)


@dataclass(frozen=True)
class Identity:
    etag: str | None = None
    last_modified: str | None = None
    filename: str | None = None
    total: int | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], total: int | None) -> "Identity":
        match = _FILENAME.search(headers.get("Content-Disposition", ""))
        return cls(etag=headers.get("ETag") or None, last_modified=headers.get("Last-Modified") or None,
                   filename=match.group(1).strip() if match else None, total=total)

    @classmethod
    def from_json(cls, data: Any) -> "Identity | None":
        if not isinstance(data, dict):
            return None
        try:
            return cls(**{k: data.get(k) for k in ("etag", "last_modified", "filename", "total")})
        except TypeError:
            return None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> tuple[str, str | None, int | None]:
        """What decides sameness, strongest evidence first."""
        if self.etag and not self.etag.startswith("W/"):
            return ("etag", self.etag, self.total)
        if self.last_modified:
            return ("last-modified", self.last_modified, self.total)
        return ("name", self.filename, self.total)

    def same(self, other: "Identity | None") -> bool:
        return other is not None and self.key() == other.key()

    def if_range(self) -> str | None:
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def describe(self) -> str:
        kind, value, total = self.key()
        return f"{kind} {value!s} ({total} bytes)" if total is not None else f"{kind} {value!s}"


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    if not value:
        return None
    match = _CONTENT_RANGE.match(value.strip())
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total
