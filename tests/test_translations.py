"""Every user-visible string has a zh-Hans translation: extraction from the sources finds no msgid that
the catalogue lacks, leaves untranslated or only guessed (fuzzy)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

SOURCES = ("appliance", "console", "frontend", "workers")
PO = Path("locale/zh_Hans/LC_MESSAGES/django.po")


def _extract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """makemessages over a scratch copy, so the real catalogue is only read."""
    root = Path(settings.BASE_DIR)
    for name in SOURCES:
        (tmp_path / name).symlink_to(root / name)
    po = tmp_path / PO
    po.parent.mkdir(parents=True)
    shutil.copy(root / PO, po)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings, "LOCALE_PATHS", [tmp_path / "locale"])
    call_command("makemessages", locale=["zh_Hans"], symlinks=True, no_obsolete=True, verbosity=0)
    return po


def _msgids(po: Path, *flags: str) -> list[str]:
    out = subprocess.run(["msgattrib", "--no-wrap", *flags, str(po)], capture_output=True, text=True, check=True)
    return [
        line[len("msgid ") :] for line in out.stdout.splitlines() if line.startswith('msgid "') and line != 'msgid ""'
    ]


def test_every_msgid_is_translated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not shutil.which("msgattrib"):
        pytest.fail("GNU gettext (msgattrib) is missing; it is also what compilemessages needs")
    po = _extract(tmp_path, monkeypatch)
    untranslated = _msgids(po, "--untranslated")
    guessed = _msgids(po, "--only-fuzzy")
    assert not untranslated, f"{len(untranslated)} msgids without a zh-Hans translation: {untranslated[:20]}"
    assert not guessed, f"{len(guessed)} msgids with only a fuzzy (guessed) translation: {guessed[:20]}"
