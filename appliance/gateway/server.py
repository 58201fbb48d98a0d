"""Adjustments to the ASGI server the console runs under (daphne on Twisted), applied by console/asgi.py."""

from __future__ import annotations

import functools


def memoise_twisted_content_type() -> None:
    """Twisted parses every POST's Content-Type with the ``email`` package (about 0.1 ms, a tenth of a
    gateway request's own work) only to learn whether the body is a form. The answer depends on the
    header's bytes alone and clients send a handful of distinct values, so it is memoised.
    """
    try:
        from twisted.web import http
    except ImportError:  # not under daphne
        return
    parse = getattr(http, "_parseContentType", None)
    if parse is not None and not hasattr(parse, "cache_info"):
        http._parseContentType = functools.lru_cache(maxsize=256)(parse)
