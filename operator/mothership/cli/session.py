"""What every cluster command shares: kubectl's flags, one async client, errors as one line.

``--kubeconfig``, ``--context`` and ``-n/--namespace`` mean what they mean to
kubectl (the namespace defaults to the context's, then ``default``), and the
client is the operator's own (``mothership.kube``), so the CLI and the operator
speak to the API server the same way. Before a command changes anything,
:func:`session` proves the context exists, the server answers and the
namespace is there: each failure is one line naming the flag, exit 2.

Exit codes: 0 done, 1 the cluster reports a failure (an App that did not become
Ready), 2 bad input or could not run (unknown context or namespace, no cluster,
403: the line names the verb and the resource the user lacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import re
import sys
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from mothership.api.common import DNS_1035, DNS_LABEL
from mothership.kube import ApiError, Kube

FIELD_MANAGER = "mothership-cli"
"""The field manager of everything the CLI writes: a second ``deploy`` updates only what it owns."""

EXIT_FAILED, EXIT_USAGE = 1, 2

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""In a pod, the namespace commands default to (kubectl does the same)."""

Kubeconfig = Annotated[
    Path | None,
    typer.Option("--kubeconfig", metavar="PATH", help="Kubeconfig; default $KUBECONFIG, ~/.kube/config."),
]
Context = Annotated[str | None, typer.Option("--context", help="Kubeconfig context; default: current.")]
Namespace = Annotated[
    str | None,
    typer.Option("--namespace", "-n", metavar="NS", help="Namespace; default: the context's, else default."),
]


class Usage(Exception):
    """Bad input: one line naming the flag (``--image``) and what is allowed; exit 2."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}" if flag else message)
        self.flag = flag


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one line on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def check_name(name: str, flag: str = "NAME") -> str:
    """A name that also names a Service: a DNS-1035 label (lower case, starts with a letter, ≤ 63)."""
    if len(name) > 63 or not re.fullmatch(DNS_1035, name):
        raise Usage(flag, f"{name!r} is not a DNS-1035 label: lower-case letters, digits and '-', "
                          "starting with a letter, at most 63 characters")
    return name


@dataclass
class Session:
    """A connected client and the namespace the command works in."""

    kube: Kube
    namespace: str
    context: str | None


def _context_namespace(kubeconfig: Path | None, context: str | None) -> tuple[str | None, str | None]:
    """(context name, its namespace) from the kubeconfig; Usage when ``context`` is not in it."""
    import os

    from kubernetes import config

    path = str(kubeconfig) if kubeconfig else (os.environ.get("KUBECONFIG") or None)
    try:
        contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, TypeError) as exc:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig and not context:
            # in a pod: the ServiceAccount's credentials, and its namespace as the default
            with contextlib.suppress(OSError):
                return None, SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
            return None, None
        raise Usage("--kubeconfig", f"no usable kubeconfig ({path or '~/.kube/config'}): {exc}") from None
    if context is not None:
        found = next((c for c in contexts if c.get("name") == context), None)
        if found is None:
            names = ", ".join(sorted(str(c.get("name")) for c in contexts)) or "none"
            raise Usage("--context", f"no context {context!r} in the kubeconfig (it has: {names})")
        active = found
    return (active or {}).get("name"), ((active or {}).get("context") or {}).get("namespace")


@contextlib.asynccontextmanager
async def session(
    kubeconfig: Path | None, context: str | None, namespace: str | None, *, check_namespace: bool = True
) -> AsyncIterator[Session]:
    """Connect as kubectl would and prove the server answers (and the namespace exists) before anything."""
    from kubernetes import config

    if kubeconfig is not None and not kubeconfig.exists():
        raise Usage("--kubeconfig", f"{kubeconfig} does not exist")
    name, default_namespace = _context_namespace(kubeconfig, context)
    try:
        kube = Kube.connect(context=context, kubeconfig=str(kubeconfig) if kubeconfig else None, timeout=15)
    except (config.ConfigException, OSError, ValueError) as exc:
        raise Usage("--context" if context else "--kubeconfig", f"cannot load credentials: {exc}") from None
    async with kube:
        try:
            await kube.version()
        except ApiError as exc:
            if exc.status == 0:
                raise Usage("--context" if context else "--kubeconfig",
                            f"no cluster reachable at {kube.credentials.server} ({exc.message})") from None
            if exc.status != 403:  # some clusters hide /version from anonymous users; the next call tells
                raise
        ns = namespace or default_namespace or "default"
        if namespace is not None:
            check_name_label(ns)
        if check_namespace:
            try:
                found = await kube.get("Namespace", ns)
            except ApiError as exc:
                if exc.status != 403:  # a tenant owner may not read Namespaces: the next call tells
                    raise
                found = {}
            if found is None:
                raise Usage("-n/--namespace", f"namespace {ns!r} not found")
        yield Session(kube, ns, name)


def check_name_label(namespace: str) -> None:
    if not re.fullmatch(DNS_LABEL, namespace):
        raise Usage("-n/--namespace", f"{namespace!r} is not a namespace name (a DNS-1123 label)")


def forbidden(exc: ApiError) -> str:
    """A 403 in words: the verb and the resource the user lacks, and where."""
    call = exc.call
    resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
    resource = f"{resource}.{call.group}" if call.group else resource
    where = f' in namespace "{exc.namespace}"' if exc.namespace else " (cluster-wide)"
    return (f"forbidden: you may not {call.verb} {resource}{where}; ask your cluster admin or the "
            f"Tenant's owner for that permission")


def run(coro: Coroutine[Any, Any, int | None], *, server_error: int = EXIT_FAILED) -> None:
    """Run a command's coroutine; turn Usage and API errors into one line and an exit code.

    ``server_error`` is the exit code of a 5xx: 1 for app commands, 2 where 1 already means
    something else (``loadtest wait``: the test failed).
    """
    try:
        code = asyncio.run(coro)
    except Usage as exc:
        fail(str(exc))
    except ApiError as exc:
        if exc.status == 403:
            fail(forbidden(exc))
        if exc.status == 0:
            fail(f"lost the cluster: {exc.message}")
        if exc.status == 404 and exc.name:
            fail(f"{exc.call.resource} {exc.name!r} not found in namespace {exc.namespace!r}")
        fail(f"{exc.reason}: {exc.message}", server_error if exc.status >= 500 else EXIT_USAGE)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(code or 0)


def age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    """kubectl's age: ``45s``, ``12m``, ``3h``, ``5d``."""
    if not timestamp:
        return "-"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def dump(data: Any, output: str) -> None:
    """``data`` as ``-o json`` or ``-o yaml`` prints it (keys in the order given)."""
    import json

    import yaml

    if output == "json":
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())


def interactive() -> bool:
    """Whether a person is at the terminal (progress, questions)."""
    return sys.stdin.isatty() and sys.stdout.isatty()
