#!/usr/bin/env bash
# Regenerate docs/screenshots/: the main pages in zh-Hans and English at 1440×900 and 390×844, drawn by headless
# Chromium from a seeded test database (tests/browser/screens.py), then compressed with pngquant.
# Needs what the browser tests need (MariaDB, Redis, Chromium) and the font package fonts-wqy-microhei.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${TEST_DATABASE_URL:=mysql://root@127.0.0.1:3306/console}"
if ! fc-list 2>/dev/null | grep -qi "wqy\|noto sans cjk"; then
  echo "No CJK font: install fonts-wqy-microhei (apt-get install fonts-wqy-microhei) so Chinese is drawn." >&2
  exit 1
fi
rm -f docs/screenshots/*.png
DATABASE_URL="$TEST_DATABASE_URL" CONSOLE_ENV=test .venv/bin/python -m pytest -q -p no:cacheprovider tests/browser/screens.py
if command -v pngquant >/dev/null; then
  pngquant --force --skip-if-larger --strip --quality=55-80 --ext .png docs/screenshots/*.png || true
else
  echo "pngquant not found (apt-get install pngquant): screenshots left uncompressed" >&2
fi
du -ch docs/screenshots/*.png | tail -1
