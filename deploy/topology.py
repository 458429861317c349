"""The deployment's configuration as data: docker-compose.yml's services and the balancer's
nginx file, read (and, for `make rehearse`, re-addressed) in one place.

deploy/rehearse.py starts its local processes from these, and tests/test_deploy.py checks
that the files agree with each other and with the package.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
BALANCER_CONF = DEPLOY / "nginx" / "grpc-balancer.conf"

_UPSTREAM_BLOCK = re.compile(r"^upstream\s+\w+\s*\{.*?^\}", re.M | re.S)
_UPSTREAM_SERVER = re.compile(r"^[ \t]*server[ \t]+(\S+)([^;\n]*);\n", re.M)
_LISTEN = re.compile(r"^([ \t]*listen[ \t]+)(\d+)", re.M)
_ENV_REFERENCE = re.compile(r"\$\{(\w+)\}")


def compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def service(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """One service of the compose file (or of `spec`, a compose file already read)."""
    return (spec or compose())["services"][name]


def argv(service_spec: dict[str, Any]) -> list[str]:
    """The command line the service's container runs: its entrypoint, then its command."""
    return [*service_spec.get("entrypoint", []), *service_spec.get("command", [])]


def environment(service_spec: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in service_spec.get("environment", {}).items()}


def mounts(service_spec: dict[str, Any]) -> dict[str, str]:
    """Volume or host path -> path in the container, from the short `source:target[:ro]` form."""
    return dict(entry.split(":")[:2] for entry in service_spec.get("volumes", []))


def render_template(text: str, env: dict[str, str]) -> str:
    """What the nginx image's envsubst makes of a template: only variables in `env` change."""
    return _ENV_REFERENCE.sub(lambda match: env.get(match.group(1), match.group(0)), text)


def upstream_addresses(conf: str) -> list[str]:
    """The `server` addresses of the conf's one upstream block."""
    return [match.group(1) for match in _UPSTREAM_SERVER.finditer(_upstream_block(conf).group(0))]


def with_upstream_addresses(conf: str, addresses: list[str]) -> str:
    """The conf with its upstream servers replaced by `addresses`, with the first one's
    parameters but `resolve`: literal addresses need no DNS, and nginx < 1.27.3 lacks it."""
    block = _upstream_block(conf)
    body = block.group(0)
    first = _UPSTREAM_SERVER.search(body)
    if first is None:
        raise ValueError(f"{BALANCER_CONF}: the upstream block has no `server` line")
    indent = first.group(0)[: first.group(0).index("server")]
    parameters = "".join(f" {p}" for p in first.group(2).split() if p != "resolve")
    servers = "".join(f"{indent}server {address}{parameters};\n" for address in addresses)
    rest = _UPSTREAM_SERVER.sub("", body[first.end() :])
    return conf[: block.start()] + body[: first.start()] + servers + rest + conf[block.end() :]


def listen_port(conf: str) -> int:
    return int(_listen(conf).group(2))


def with_listen_port(conf: str, port: int) -> str:
    _listen(conf)
    return _LISTEN.sub(lambda match: f"{match.group(1)}{port}", conf)


def _upstream_block(conf: str) -> re.Match[str]:
    blocks = list(_UPSTREAM_BLOCK.finditer(conf))
    if len(blocks) != 1:
        raise ValueError(f"{BALANCER_CONF}: expected one upstream block, found {len(blocks)}")
    return blocks[0]


def _listen(conf: str) -> re.Match[str]:
    listens = list(_LISTEN.finditer(conf))
    if len(listens) != 1:
        raise ValueError(f"{BALANCER_CONF}: expected one `listen PORT`, found {len(listens)}")
    return listens[0]
