"""Docker image references, checked against the grammar of distribution/reference (docker's own parser).

Nodes report their images by tag in Docker's short ("familiar") form, e.g. ``vllm/vllm-openai:v0.8.5``,
and the console matches catalog entries against those strings exactly, so a catalog entry is stored in
that same form: ``docker.io/`` and ``library/`` dropped, ``:latest`` added when no tag is given.
Digests are refused: an image loaded from a tarball has no registry digest to match.
"""

from __future__ import annotations

import re

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_TAG = r"[\w][\w.-]{0,127}"
DOMAIN = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
REMOTE = re.compile(rf"^(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::(?P<tag>{_TAG}))?$", re.ASCII)
NAME_MAX_LENGTH = 255
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


class InvalidReference(ValueError):
    """Not an image reference the console can match against what nodes report."""


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's rule: the first component is a registry only if it has a '.' or ':' or is 'localhost'."""
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "", name


def normalize_reference(value: str) -> str:
    """``value`` in the short form nodes report (``repo:tag``), or :class:`InvalidReference` saying why."""
    value = value.strip()
    if "@" in value:
        raise InvalidReference("use a tag, not a digest: images loaded from a tarball have no registry digest")
    domain, remote = _split_domain(value)
    match = REMOTE.match(remote)
    if match is None or (domain and not DOMAIN.match(domain)):
        raise InvalidReference(
            f"{value!r} is not a valid image reference (lower-case repository[:tag], e.g. vllm/vllm-openai:v0.8.5)"
        )
    path, tag = match.group("path"), match.group("tag") or "latest"
    if domain.lower() in DOCKER_HUB:
        domain = ""
    if not domain and path.startswith("library/"):
        path = path.removeprefix("library/")
    name = f"{domain}/{path}" if domain else path
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidReference(f"the repository name is longer than {NAME_MAX_LENGTH} characters")
    return f"{name}:{tag}"
