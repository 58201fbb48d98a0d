"""Fixtures the image tests share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def import_dir(tmp_path: Path, settings: Any) -> Path:
    """The folder offline images are imported from (``APPLIANCE_IMAGE_IMPORT_DIR``), empty."""
    directory = tmp_path / "images"
    directory.mkdir()
    settings.APPLIANCE_IMAGE_IMPORT_DIR = str(directory)
    return directory
