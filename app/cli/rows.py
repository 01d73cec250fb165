"""What zoo-predict reports per file, and the file reading both of its modes share."""

import os
from dataclasses import dataclass

import numpy as np

from app.config import Settings

COLUMNS = ("path", "label", "confidence", "error")
# The service's upload limit holds here too: a file it would refuse is refused alike.
MAX_FILE_BYTES: int = Settings.model_fields["max_upload_bytes"].default


class Stopped(Exception):
    """A refusal that holds for every file (the model cannot load, the service refuses the
    key or the model, or cannot be reached): the run stops, saying why."""


@dataclass(frozen=True)
class Row:
    """One file's line of the CSV: its label and confidence, or why it has none."""

    path: str
    label: str = ""
    confidence: float | None = None
    error: str = ""

    def cells(self) -> list[str]:
        """The CSV cells; the confidence as the float32 the model computed, shortest form."""
        shown = "" if self.confidence is None else str(np.float32(self.confidence))
        return [self.path, self.label, shown, self.error]


def read_file(path: str) -> tuple[bytes, str]:
    """A file's bytes, or (b"", why it cannot be read)."""
    try:
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            limit = f"the limit is {MAX_FILE_BYTES} (MAX_UPLOAD_BYTES)"
            return b"", f"the file is {size} bytes; {limit}"
        with open(path, "rb") as f:
            return f.read(), ""
    except OSError as exc:
        return b"", f"cannot read the file: {exc.strerror or exc}"
