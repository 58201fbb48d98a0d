"""Receiving an image tarball upload straight into the import directory.

Django's own handlers keep an upload in memory or in the system temp directory, and the console would
then copy it. This handler writes the file part, as the multipart parser yields it, into a hidden
partial file under ``APPLIANCE_IMAGE_IMPORT_DIR/uploads``, hashing it on the way, stops past
``APPLIANCE_IMAGE_UPLOAD_MAX_BYTES`` and writes nothing at all for anyone but a platform admin (the
CSRF check of a session parses the body before the view can refuse). The partial file is deleted when
the request ends unless the import service kept it (a rename within one filesystem).

Django's ASGI handler spools a request body to the temp directory before
any view runs, so an upload also passes through ``TMPDIR``: see docs/configuration.md.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, StopUpload
from django.http import HttpRequest, QueryDict
from django.utils.datastructures import MultiValueDict

FIELD = "file"
UPLOADS_SUBDIR = "uploads"
# Room for the multipart envelope and the small fields around the file.
ENVELOPE_BYTES = 1024 * 1024


def uploads_dir() -> Path:
    return Path(settings.APPLIANCE_IMAGE_IMPORT_DIR).resolve() / UPLOADS_SUBDIR


def safe_name(name: str) -> str:
    """The client's file name reduced to a harmless one (no directories, no odd characters)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(name or ""))[-100:].lstrip(".")
    return base or "image.tar"


class ReceivedTarball(UploadedFile):
    """An upload being written to a partial file in the uploads directory, with its SHA-256."""

    def __init__(self, name: str, content_type: str, charset: str | None, extra: dict[str, Any] | None) -> None:
        directory = uploads_dir()
        directory.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=".partial-", suffix=".tar", dir=directory)
        self.stream: BinaryIO = os.fdopen(fd, "w+b")
        super().__init__(self.stream, name, content_type, 0, charset, extra)
        self.partial = Path(partial)
        self.digest = hashlib.sha256()
        self.kept = False

    def append(self, chunk: bytes) -> None:
        self.stream.write(chunk)
        self.digest.update(chunk)
        self.size = (self.size or 0) + len(chunk)

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()

    def head(self, length: int = 512) -> bytes:
        self.stream.flush()
        with self.partial.open("rb") as f:
            return f.read(length)

    def keep(self, final: Path) -> None:
        """Move the received file to ``final`` (same directory, so the rename is atomic)."""
        self.stream.flush()
        os.fsync(self.stream.fileno())
        os.chmod(self.partial, 0o644)  # the node's worker may run as another user on shared storage
        os.replace(self.partial, final)
        self.kept = True

    def close(self) -> None:
        try:
            super().close()
        finally:
            if not self.kept:
                self.partial.unlink(missing_ok=True)


class TarballUploadHandler(FileUploadHandler):
    """Writes the ``file`` part into the import directory; see the module's docstring."""

    def __init__(self, request: HttpRequest, allowed: Callable[[], bool]) -> None:
        super().__init__(request)
        self.allowed = allowed
        self.limit = int(settings.APPLIANCE_IMAGE_UPLOAD_MAX_BYTES)
        self.too_large = False
        self.upload: ReceivedTarball | None = None

    def handle_raw_input(
        self, input_data: Any, META: dict[str, Any], content_length: int, boundary: str, encoding: str | None = None
    ) -> tuple[QueryDict, MultiValueDict[str, Any]] | None:
        if content_length > self.limit + ENVELOPE_BYTES:
            self.too_large = True
            return QueryDict(), MultiValueDict()  # refuse without reading the body
        return None

    def new_file(self, field_name: str, file_name: str, content_type: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, content_type, *args, **kwargs)
        if field_name != FIELD or self.upload is not None or not self.allowed():
            raise SkipFile()
        self.upload = ReceivedTarball(file_name, content_type, self.charset, self.content_type_extra)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if self.upload is None:
            return None
        if start + len(raw_data) > self.limit:
            self.too_large = True
            self.upload.close()
            self.upload = None
            raise StopUpload(connection_reset=True)
        self.upload.append(raw_data)
        return None

    def file_complete(self, file_size: int) -> ReceivedTarball | None:
        if self.upload is not None:
            self.upload.stream.seek(0)
        return self.upload

    def upload_interrupted(self) -> None:
        if self.upload is not None:
            self.upload.close()
            self.upload = None
