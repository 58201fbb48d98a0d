"""Deployment event reasons in the reader's language.

Services, lifecycle and workers store a reason as English text (it is also what logs and the API
show). Each template below is the English form they write; a page matches a stored reason against
them and shows the translation, keeping the values (node, container, seconds) it carried. A reason
that matches none (an engine's own message) is shown as stored.
"""

from __future__ import annotations

import re
from functools import cache

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

# English template as stored → translation; both use the same %(name)s placeholders.
TEMPLATES: dict[str, Promise] = {
    "created": _("created"),
    "stopped by request": _("stopped by request"),
    "restart requested": _("restart requested"),
    "its GPU units were force-released": _("its GPU units were force-released"),
    "started on %(nodes)s": _("started on %(nodes)s"),
    "restarted on %(nodes)s": _("restarted on %(nodes)s"),
    "scheduled on %(nodes)s": _("scheduled on %(nodes)s"),
    "restart %(count)s/%(limit)s on %(nodes)s": _("restart %(count)s/%(limit)s on %(nodes)s"),
    "creating container %(container)s on %(node)s": _("creating container %(container)s on %(node)s"),
    "container started; waiting for the engine to load the model": _(
        "container started; waiting for the engine to load the model"
    ),
    "all containers stopped and removed; GPU units released": _(
        "all containers stopped and removed; GPU units released"
    ),
    "host port %(busy)s is in use on %(node)s; using %(port)s": _(
        "host port %(busy)s is in use on %(node)s; using %(port)s"
    ),
    "image %(image)s is not on node %(node)s; import it": _("image %(image)s is not on node %(node)s; import it"),
    "Docker engine on %(node)s unreachable: %(detail)s": _("Docker engine on %(node)s unreachable: %(detail)s"),
    "container failed to start: %(detail)s": _("container failed to start: %(detail)s"),
    "container exited while loading the model": _("container exited while loading the model"),
    "container %(container)s vanished": _("container %(container)s vanished"),
    "container %(container)s died": _("container %(container)s died"),
    "healthy after %(seconds)s s: %(detail)s": _("healthy after %(seconds)s s: %(detail)s"),
    "not healthy after %(seconds)s s: %(detail)s": _("not healthy after %(seconds)s s: %(detail)s"),
    "loading for %(seconds)s s: %(detail)s": _("loading for %(seconds)s s: %(detail)s"),
    # The engines' health details (appliance/engines), which the lines above carry as %(detail)s.
    "llama-server is loading the model": _("llama-server is loading the model"),
    "%(path)s did not answer 200": _("%(path)s did not answer 200"),
    "%(path)s answered HTTP %(status)s": _("%(path)s answered HTTP %(status)s"),
    "no answer from %(url)s": _("no answer from %(url)s"),
    "serves %(listed)s, not %(model)s": _("serves %(listed)s, not %(model)s"),
    "%(model)s is not created yet": _("%(model)s is not created yet"),
    # Relaunch and adoption (reconcile.py, lifecycle.mark_started); an engine's model created by the
    # console (model_setup.py, OllamaEngine.create_model). Ollama's own statuses and errors stay as sent.
    "adopted container %(container)s (%(id)s) on %(node)s, made by an earlier launch that did not finish": _(
        "adopted container %(container)s (%(id)s) on %(node)s, made by an earlier launch that did not finish"
    ),
    "launch of %(container)s on %(node)s unfinished after %(seconds)s s (worker died?); launching again": _(
        "launch of %(container)s on %(node)s unfinished after %(seconds)s s (worker died?); launching again"
    ),
    "hashing %(file)s (%(size)s MiB)": _("hashing %(file)s (%(size)s MiB)"),
    "pushing %(file)s to Ollama as blob %(digest)s (%(size)s MiB)": _(
        "pushing %(file)s to Ollama as blob %(digest)s (%(size)s MiB)"
    ),
    "pushed %(sent)s of %(size)s MiB": _("pushed %(sent)s of %(size)s MiB"),
    "blob %(digest)s is already in Ollama": _("blob %(digest)s is already in Ollama"),
    "%(model)s already exists in Ollama": _("%(model)s already exists in Ollama"),
    "Ollama: %(status)s": _("Ollama: %(status)s"),
    "%(model)s created in %(engine)s": _("%(model)s created in %(engine)s"),
    "%(engine)s could not create %(model)s: %(detail)s": _("%(engine)s could not create %(model)s: %(detail)s"),
    "Ollama stopped answering: %(detail)s": _("Ollama stopped answering: %(detail)s"),
    "cannot read the model file %(path)s: %(detail)s": _("cannot read the model file %(path)s: %(detail)s"),
    "APPLIANCE_MODELS_DIR is not set on node %(node)s: %(engine)s gets its model file from there": _(
        "APPLIANCE_MODELS_DIR is not set on node %(node)s: %(engine)s gets its model file from there"
    ),
    "Ollama ended the creation of %(model)s without success (last: %(last)s)": _(
        "Ollama ended the creation of %(model)s without success (last: %(last)s)"
    ),
}
EXIT_CODE = re.compile(r"^(?P<head>.*) \(exit code (?P<code>-?\d+)\)$")
_PLACEHOLDER = re.compile(r"%\\\((\w+)\\\)s")


@cache
def _patterns() -> list[tuple[re.Pattern[str], Promise]]:
    compiled = []
    for english, translated in TEMPLATES.items():
        regex = _PLACEHOLDER.sub(lambda m: f"(?P<{m.group(1)}>.*?)", re.escape(english))
        compiled.append((re.compile(f"^{regex}$", re.DOTALL), translated))
    return compiled


def _translate_line(line: str) -> str:
    for pattern, translated in _patterns():
        match = pattern.match(line)
        if match:
            # A value may itself be a known reason (an engine's health detail inside "loading for …").
            values = {name: _translate_line(value) if value else value for name, value in match.groupdict().items()}
            return (str(translated) % values).rstrip("：: ")
    return line


def translate_reason(reason: str) -> str:
    """The stored reason with its first line translated; log lines after it stay as the engine wrote them."""
    first, newline, rest = reason.partition("\n")
    suffix = ""
    coded = EXIT_CODE.match(first)
    if coded:
        first, suffix = coded["head"], str(_(" (exit code %(code)s)")) % {"code": coded["code"]}
    return _translate_line(first) + suffix + newline + rest
