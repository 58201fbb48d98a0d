"""A real OpenLDAP ``slapd`` for the tests: a temporary configuration and database loaded with
``slapadd``, served on a free 127.0.0.1 port, changed with ``ldapmodify``/``ldapdelete`` like an
administrator of the directory would, and stopped at the end."""

from __future__ import annotations

import base64
import functools
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.directory.process import serving

BASE = "dc=example,dc=cn"
ADMIN_DN = f"cn=admin,{BASE}"
ADMIN_PASSWORD = "directory-admin-secret"
SERVICE_DN = f"cn=console,ou=services,{BASE}"
SERVICE_PASSWORD = "console-bind-secret"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
Entry = tuple[str, dict[str, list[str]]]

CONFIG = """\
{includes}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {root}/slapd.pid
loglevel none
database mdb
maxsize 33554432
suffix "{base}"
rootdn "{admin}"
rootpw {password}
directory {root}/data
access to attrs=userPassword by anonymous auth by self write by * none
access to * by users read by * none
"""


def ldif(entries: list[Entry]) -> str:
    """LDIF text; values that are not plain ASCII are base64 (``attr:: …``) as the format requires."""
    blocks = []
    for dn, attrs in entries:
        lines = [_line("dn", dn)]
        for name, values in attrs.items():
            lines += [_line(name, value) for value in values]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _line(name: str, value: str) -> str:
    if value.isascii() and not value.startswith((" ", ":", "<")):
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_tools() -> list[str]:
    return [tool for tool in ("slapd", "slapadd", "ldapmodify", "ldapdelete") if shutil.which(tool) is None]


@dataclass
class Directory:
    uri: str
    root: Path

    def _run(self, tool: str, *args: str, text: str = "") -> None:
        cmd = [tool, "-x", "-H", self.uri, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD, *args]
        subprocess.run(cmd, input=text, text=True, check=True, capture_output=True, timeout=30)

    def modify(self, text: str) -> None:
        self._run("ldapmodify", text=text)

    def add(self, entries: list[Entry]) -> None:
        self._run("ldapmodify", "-a", text=ldif(entries))

    def delete(self, dn: str) -> None:
        self._run("ldapdelete", dn)


@contextmanager
def running_slapd(root: Path, entries: list[Entry]) -> Iterator[Directory]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir()
    includes = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS)
    conf = root / "slapd.conf"
    conf.write_text(CONFIG.format(includes=includes, root=root, base=BASE, admin=ADMIN_DN, password=ADMIN_PASSWORD))
    subprocess.run(
        ["slapadd", "-f", str(conf), "-q"], input=ldif(entries), text=True, check=True, timeout=60, capture_output=True
    )
    port = free_port()
    uri = f"ldap://127.0.0.1:{port}"
    cmd = ["slapd", "-f", str(conf), "-h", f"{uri}/", "-d", "0"]
    with serving(cmd, root / "slapd.log", functools.partial(_listens, port), "slapd", 20):
        yield Directory(uri=uri, root=root)


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
