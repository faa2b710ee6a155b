"""What a dataset name is: the one rule the config, the hub's list and `serve` all apply."""
from __future__ import annotations

import re

# Matched whole (fullmatch): `$` would let a trailing newline through.
DATASET_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def is_dataset_name(text: str) -> bool:
    """True for 1-128 letters, digits, '.', '_' or '-', except '.' and '..' (they name folders, not
    datasets): such a name is safe as a file name, a folder name and a URL path segment as is."""
    return DATASET_NAME.fullmatch(text) is not None and text not in (".", "..")
