"""Result PNGs on disk, one `{task_id}.png` per successful call.

Identical results (same source and target bytes) are stored once under a content hash and
each task's file is a hard link to it, so a soak of thousands of calls on the same sample
URLs costs one file's worth of disk.
"""

import os
import re
import shutil
import tempfile
from pathlib import Path

TASK_FILE_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.png")
"""The only file names served from storage: `{uuid4}.png` (no path can sneak through)."""

BLOB_DIR_NAME = ".blobs"


class ResultStore:
    """A folder of result PNGs; a temporary one (removed on close) unless a folder is given."""

    def __init__(self, folder: Path | None) -> None:
        self._owned = folder is None
        self.folder = (
            Path(tempfile.mkdtemp(prefix="faceswap-emulator-")) if folder is None else folder
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / BLOB_DIR_NAME).mkdir(exist_ok=True)

    def save(self, task_id: str, png: bytes, digest: str) -> Path:
        """Store `png` (whose content hash is `digest`) as `{task_id}.png`; blocking."""
        blob = self.folder / BLOB_DIR_NAME / f"{digest}.png"
        if not blob.exists():
            partial = blob.with_suffix(f".{os.getpid()}.{task_id}.tmp")
            partial.write_bytes(png)
            os.replace(partial, blob)
        path = self.folder / f"{task_id}.png"
        try:
            os.link(blob, path)
        except OSError:
            shutil.copyfile(blob, path)
        return path

    def discard(self, task_id: str) -> None:
        """Remove `{task_id}.png` if present (a task that failed after rendering); blocking."""
        (self.folder / f"{task_id}.png").unlink(missing_ok=True)

    def path_of(self, file_name: str) -> Path | None:
        """The stored file of that name, or None if it is not a stored result."""
        if not TASK_FILE_PATTERN.fullmatch(file_name):
            return None
        path = self.folder / file_name
        return path if path.is_file() else None

    def close(self) -> None:
        """Remove the folder if this store created it."""
        if self._owned:
            shutil.rmtree(self.folder, ignore_errors=True)
