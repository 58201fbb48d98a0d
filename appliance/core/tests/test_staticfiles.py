"""When ``manage.py serve`` collects the static files again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from appliance.core.staticfiles import StaticStorage, collected_is_stale, manifest_path


def test_collected_again_when_missing_or_older_than_a_source(settings: Any, tmp_path: Path) -> None:
    settings.STATIC_ROOT = tmp_path / "static"
    assert collected_is_stale()  # nothing collected yet
    manifest = manifest_path()
    manifest.parent.mkdir()
    manifest.write_text("{}")
    assert not collected_is_stale()  # written after every source file
    os.utime(manifest, (0, 0))
    assert collected_is_stale()  # every source file is newer


def test_compressed_copies_are_gzip_only() -> None:
    compressor = StaticStorage().create_compressor(quiet=True)
    assert compressor.use_gzip and not compressor.use_brotli
