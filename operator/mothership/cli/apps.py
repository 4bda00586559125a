"""``mothership app``: deploy, list, scale, read logs of and delete Apps, one command each.

A Heroku-style face on the ``App`` resource, against whatever cluster the
kubeconfig reaches. ``deploy`` is a server-side apply under the field manager
``mothership-cli``, so re-running it changes only the fields it set; ``scale``
and ``env`` are merge patches under the same manager (a later ``deploy``
without ``--env`` keeps what ``env set`` did). Everything is checked before
anything is applied: a bad flag is one line naming it, exit 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from mothership.api.common import API_VERSION

from .session import (
    EXIT_FAILED,
    FIELD_MANAGER,
    Context,
    Kubeconfig,
    Namespace,
    Session,
    Usage,
    age,
    check_name,
    dump,
    interactive,
    run,
    session,
)

app_app = typer.Typer(no_args_is_help=True, help="Deploy and run Apps: a Heroku-style face on App resources.")
env_app = typer.Typer(no_args_is_help=True, help="Set or unset an App's environment variables.")
app_app.add_typer(env_app, name="env")

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
"""The pod-template annotation of a rolling restart: the one ``kubectl rollout restart`` sets."""
IMAGE_PULL = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
HIDDEN_ANNOTATIONS = (
    "mothership.dev/", "kopf.zalando.org/", "kubectl.kubernetes.io/last-applied-configuration")
"""Bookkeeping, not intent: kopf's progress and last-handled spec live under ``controller.PREFIX``."""
POLL = 0.5
"""Seconds between looks at the App, its pods and events while waiting."""
COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")

Name = Annotated[str, typer.Argument(help="The App's name (a DNS-1035 label: it names its Service).")]
Output = Annotated[str, typer.Option("--output", "-o", help="table, wide, json or yaml.")]
_FLAGS = {
    "image": "--image", "port": "--port", "replicas": "--replicas", "autoscale": "--autoscale",
    "env": "--env", "envFrom": "--env-from-secret", "expose": "--host", "resources": "--cpu/--memory",
    "healthCheck": "--health-path",
}


# --- input -------------------------------------------------------------------------


def parse_env(pairs: list[str], flag: str = "--env") -> list[dict[str, str]]:
    """``K=V`` pairs, in order; the last of a repeated name wins."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Usage(flag, f"{pair!r} is not KEY=VALUE")
        env[key] = value
    return [{"name": k, "value": v} for k, v in env.items()]


def parse_autoscale(text: str) -> dict[str, int]:
    low, sep, high = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return {"min": int(low), "max": int(high)}
    except ValueError:
        raise Usage("--autoscale", f"{text!r} is not MIN:MAX (two whole numbers, e.g. 2:10)") from None


def parse_timeout(text: str) -> float:
    from mothership.api.common import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        raise Usage("--timeout", f"{text!r} is not a duration (e.g. 90s, 5m, 1h)") from None


def validate_spec(spec: Mapping[str, Any]) -> None:
    """The App model's verdict on ``spec``, as one line naming the flag that set the bad field."""
    from pydantic import ValidationError

    from mothership.api.app import AppSpec

    try:
        AppSpec.model_validate(spec)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"]]
        flag = _FLAGS.get(loc[0], "--" + loc[0]) if loc else "spec"
        if loc and loc[0] == "resources":
            flag = "--memory" if "memory" in loc else "--cpu"
        value = error.get("input")
        if loc == ["image"]:
            raise Usage(flag, f"{value!r} is not an image reference: [registry[:port]/]path[:tag][@digest], "
                              "with the path in lower case (e.g. ghcr.io/acme/shop:1.4.2)") from None
        if loc == ["port"]:
            raise Usage(flag, f"{value!r} is out of range: a port is 1 to 65535") from None
        message = str(error["msg"]).removeprefix("Value error, ")
        raise Usage(flag, f"{message} (got {value!r})" if not isinstance(value, dict | list) else message
                    ) from None


def build_app(
    name: str, namespace: str, *, image: str, port: int, replicas: int | None, autoscale: str | None,
    env: list[str], env_from_secret: list[str], host: str | None, tls: bool, cpu: str | None,
    memory: str | None, health_path: str | None,
) -> dict[str, Any]:
    """The App a deploy applies: only the fields the flags set, so the CLI owns only those."""
    check_name(name)
    if replicas is not None and autoscale is not None:
        raise Usage("--replicas/--autoscale", "give one of them, not both")
    spec: dict[str, Any] = {"image": image, "port": port}
    if replicas is not None:
        spec["replicas"] = replicas
    if autoscale is not None:
        spec["autoscale"] = parse_autoscale(autoscale)
    if env:
        spec["env"] = parse_env(env)
    if env_from_secret:
        spec["envFrom"] = [{"secretRef": s} for s in env_from_secret]
    if host is not None:
        spec["expose"] = {"host": host, "tls": tls}
    elif tls:
        raise Usage("--tls", "needs --host: TLS is served by the Ingress for that host")
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    if requests:
        spec["resources"] = {"requests": requests}
    if health_path is not None:
        spec["healthCheck"] = {"path": health_path}
    validate_spec(spec)
    return {"apiVersion": API_VERSION, "kind": "App", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


# --- reading the cluster -----------------------------------------------------------


def url_of(app: Mapping[str, Any]) -> str:
    """The public URL when exposed, else the in-cluster one (the operator's, or what it will be)."""
    status = app.get("status") or {}
    meta = app["metadata"]
    return str(status.get("externalUrl") or status.get("url")
               or f"http://{meta['name']}.{meta.get('namespace')}.svc.cluster.local")


async def pods_of(s: Session, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
    from mothership.apps.builders import selector

    pods = await s.kube.list("Pod", namespace or s.namespace, label_selector=selector(name))
    return sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))


def short(pod: str, app: str) -> str:
    """A pod's name without its App's: ``web-7d9f8c-x2k4p`` -> ``7d9f8c-x2k4p``."""
    return pod.removeprefix(app + "-") or pod


def pod_state(pod: Mapping[str, Any]) -> str:
    """Pending, Running, Ready, Terminating, or the container's waiting reason (CrashLoopBackOff...)."""
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for c in status.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return str(waiting["reason"])
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
        return "Ready"
    return "Running" if status.get("phase") == "Running" else str(status.get("phase") or "Pending")


def restarts(pod: Mapping[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(c.get("restartCount") or 0) for c in statuses)


async def events_of(s: Session, name: str) -> list[dict[str, Any]]:
    """Events about the App and its children (Deployment, ReplicaSets, pods, Service...), oldest first."""
    events = await s.kube.list("Event", s.namespace)
    mine = [e for e in events if (e.get("involvedObject") or {}).get("name") == name
            or str((e.get("involvedObject") or {}).get("name", "")).startswith(name + "-")]
    return sorted(mine, key=_event_time)


def _event_time(event: Mapping[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


async def explain(s: Session, app: Mapping[str, Any], pods: list[dict[str, Any]],
                  events: list[dict[str, Any]]) -> str | None:
    """Why the rollout cannot succeed, from pod status and Events; None while it still may."""
    image = app["spec"]["image"]
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        for c in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (c.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in IMAGE_PULL:
                return (f'{reason}: image "{c.get("image") or image}" not found or not pullable '
                        f"(pod {pod['metadata']['name']}: {waiting.get('message') or 'no details'})")
            last = (c.get("lastState") or {}).get("terminated") or {}
            if reason == "CrashLoopBackOff" or (last and int(c.get("restartCount") or 0) >= 2):
                lines = await log_tail(s, pod["metadata"]["name"], previous=True, tail=20)
                code = last.get("exitCode")
                head = (f"CrashLoopBackOff: pod {pod['metadata']['name']} exits"
                        f"{f' with code {code}' if code is not None else ''} and restarts "
                        f"({c.get('restartCount', 0)} restarts); its last {len(lines)} log lines:")
                return "\n".join([head, *("  " + line for line in lines)])
    for event in reversed(events):
        message = str(event.get("message") or "")
        if event.get("reason") == "FailedCreate" and "exceeded quota" in message:
            return f"quota exceeded: {message}"
    status = app.get("status") or {}
    current = status.get("observedGeneration") == app["metadata"].get("generation")
    if status.get("phase") == "Failed" and current:
        conditions = [c for c in status.get("conditions") or [] if c.get("status") != "True"]
        detail = "; ".join(f"{c.get('reason')}: {c.get('message')}" for c in conditions) or "no details"
        return f"the App failed: {detail}"
    return None


async def log_tail(s: Session, pod: str, *, previous: bool, tail: int) -> list[str]:
    from mothership.kube import ApiError

    params = {"container": "app", "tailLines": str(tail)}
    if previous:
        params["previous"] = "true"
    lines: list[str] = []
    try:
        async for line in s.kube.stream("Pod", pod, s.namespace, params=params):
            lines.append(line.decode(errors="replace").rstrip("\n"))
    except ApiError as exc:
        lines.append(f"(no logs: {exc.message.strip()})")
    return lines[-tail:]


# --- deploy ----------------------------------------------------------------------------


def _stages(state: str) -> str:
    """``Pending → Running → Ready`` with the pod's place in it, for the progress line."""
    order = ["Pending", "Running", "Ready"]
    if state not in order:
        return f"[red]{state}[/red]"
    done = order.index(state)
    return " → ".join(f"[bold green]{s}[/]" if i == done else f"[dim]{s}[/]" if i > done else s
                      for i, s in enumerate(order))


async def wait_ready(s: Session, applied: Mapping[str, Any], timeout: float, *, live: bool) -> int:
    """Follow the rollout until the App is Ready (0) or cannot get there (1), saying why."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    name = applied["metadata"]["name"]
    generation = applied["metadata"].get("generation")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: dict[str, str] = {}
    display = Live(console=console, transient=False, auto_refresh=False) if live else None
    with display if display is not None else contextlib.nullcontext():
        while True:
            app = await s.kube.get("App", name, s.namespace)
            if app is None:
                console.print(f"app/{name} was deleted while waiting")
                return EXIT_FAILED
            pods = [p for p in await pods_of(s, name) if not p["metadata"].get("deletionTimestamp")]
            events = await events_of(s, name)
            states = {p["metadata"]["name"]: pod_state(p) for p in pods}
            if display is not None:
                table = Table.grid(padding=(0, 2))
                for pod, state in states.items():
                    table.add_row(short(pod, name), _stages(state))
                status = app.get("status") or {}
                table.add_row("", f"[dim]{status.get('phase', 'Pending')} {status.get('ready', '')}[/]")
                display.update(table, refresh=True)
            else:
                for pod, state in states.items():
                    if seen.get(pod) != state:
                        console.print(f"  {short(pod, name)}  {state}")
                seen = states
            status = app.get("status") or {}
            current = status.get("observedGeneration") == generation or generation is None
            if current and status.get("phase") == "Ready":
                break
            reason = await explain(s, app, pods, events)
            if reason is not None:
                console.print(f"[red]app/{name} failed:[/] {reason}", markup=True, highlight=False)
                return EXIT_FAILED
            if loop.time() > deadline:
                conditions = "; ".join(f"{c.get('type')}={c.get('status')} {c.get('reason')}: "
                                       f"{c.get('message')}" for c in status.get("conditions") or [])
                console.print(f"app/{name} not Ready after {timeout:g}s: phase "
                              f"{status.get('phase', 'Pending')}, ready {status.get('ready', '0/0')}"
                              f"{'; ' + conditions if conditions else ''}")
                return EXIT_FAILED
            await asyncio.sleep(POLL)
    console.print(f"app/{name} is Ready ({status.get('ready')}): {url_of(app)}")
    return 0


@app_app.command("deploy")
def deploy(
    name: Name,
    image: Annotated[str, typer.Option(help="Container image, e.g. ghcr.io/acme/shop:1.4.2.")],
    port: Annotated[int, typer.Option(help="Port the container listens on (the Service serves 80).")] = 8080,
    replicas: Annotated[int | None, typer.Option(help="Fixed replica count (not with --autoscale).")] = None,
    autoscale: Annotated[str | None, typer.Option(metavar="MIN:MAX", help="Scale on CPU between MIN and MAX.")
                         ] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", metavar="K=V", help="Env var (repeatable).")
                   ] = None,
    env_from_secret: Annotated[list[str] | None, typer.Option(
        metavar="SECRET", help="Import every key of this Secret as env vars (repeatable).")] = None,
    host: Annotated[str | None, typer.Option(help="Public host name, routed by an Ingress.")] = None,
    tls: Annotated[bool, typer.Option("--tls", help="Serve --host over HTTPS.")] = False,
    cpu: Annotated[str | None, typer.Option(help="CPU request per replica, e.g. 250m.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory request per replica, e.g. 256Mi.")] = None,
    health_path: Annotated[str | None, typer.Option(help="Readiness and liveness path, e.g. /healthz.")
                           ] = None,
    wait: Annotated[bool | None, typer.Option("--wait/--no-wait", help="Follow the rollout until Ready "
                                              "(default: on a terminal).")] = None,
    timeout: Annotated[str, typer.Option(help="Give up waiting after this long.")] = "5m",
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None,
) -> None:
    """Create or update an App (server-side apply); with --wait, follow it to Ready and print its URL.

    Exit 0 when Ready (or applied, with --no-wait), 2 for bad input,
    1 when the rollout failed: image not found, crash loop (with its last logs), quota exceeded.
    """

    async def main() -> int:
        seconds = parse_timeout(timeout)
        manifest = build_app(name, "-", image=image, port=port, replicas=replicas, autoscale=autoscale,
                             env=env or [], env_from_secret=env_from_secret or [], host=host, tls=tls,
                             cpu=cpu, memory=memory, health_path=health_path)
        async with session(kubeconfig, context, namespace) as s:
            manifest["metadata"]["namespace"] = s.namespace
            before = await s.kube.get("App", name, s.namespace)
            if before is not None:
                # replicas and autoscale exclude each other: the flag given replaces the other one,
                # whoever set it (`app scale` or an earlier deploy).
                spec = manifest["spec"]
                drop = {k: None for k, mine in (("autoscale", "replicas"), ("replicas", "autoscale"))
                        if mine in spec and k in before["spec"]}
                if drop:
                    await s.kube.patch("App", name, s.namespace, {"spec": drop}, field_manager=FIELD_MANAGER)
            applied = await s.kube.apply(manifest, field_manager=FIELD_MANAGER)
            verb = "created" if before is None else "configured"
            if before is not None and before["spec"].get("image") != image:
                verb = f"configured (rolling update to {image})"
            typer.echo(f"app/{name} {verb} in namespace {s.namespace}")
            if not (interactive() if wait is None else wait):
                typer.echo(url_of(applied))
                return 0
            return await wait_ready(s, applied, seconds, live=interactive())

    run(main())


# --- list, status, open, export -----------------------------------------------------------


def summary(app: Mapping[str, Any]) -> dict[str, Any]:
    """What ``list`` shows of an App, as plain data (the ``--output json`` record)."""
    status = app.get("status") or {}
    spec = app.get("spec") or {}
    meta = app["metadata"]
    scale = (f"{spec['autoscale'].get('min', 1)}:{spec['autoscale']['max']}" if spec.get("autoscale")
             else str(spec.get("replicas", 1)))
    return {
        "name": meta["name"], "namespace": meta.get("namespace"), "image": spec.get("image"),
        "ready": status.get("ready", "0/0"), "phase": status.get("phase", "Pending"), "url": url_of(app),
        "replicas": scale, "created": meta.get("creationTimestamp"),
    }


def _output(output: str) -> str:
    if output not in ("table", "wide", "json", "yaml"):
        raise Usage("-o/--output", f"{output!r} is not one of table, wide, json, yaml")
    return output


@app_app.command("list")
def list_apps(
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Apps of every namespace.")
                              ] = False,
    output: Output = "table",
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None,
) -> None:
    """List Apps: name, image, ready replicas, phase, URL and age."""

    async def main() -> int:
        _output(output)
        async with session(kubeconfig, context, namespace, check_namespace=not all_namespaces) as s:
            apps = await s.kube.list("App", None if all_namespaces else s.namespace)
        rows = [summary(a) for a in sorted(apps, key=lambda a: (a["metadata"].get("namespace", ""),
                                                                a["metadata"]["name"]))]
        if output in ("json", "yaml"):
            dump(rows, output)
            return 0
        if not rows:
            typer.echo("No Apps found" + ("" if all_namespaces else f" in namespace {s.namespace}") + ".")
            return 0
        _table(rows, wide=output == "wide", namespaces=all_namespaces)
        return 0

    run(main())


def _table(rows: list[dict[str, Any]], *, wide: bool, namespaces: bool) -> None:
    columns = (["NAMESPACE"] if namespaces else []) + ["NAME", "IMAGE", "READY", "PHASE", "URL", "AGE"]
    columns += ["SCALE"] if wide else []
    cells = [([r["namespace"]] if namespaces else []) + [
        r["name"], r["image"], r["ready"], r["phase"], r["url"], age(r["created"])]
        + ([r["replicas"]] if wide else []) for r in rows]
    typer.echo(columns_text([columns, *cells], squeeze=() if wide else ("URL", "IMAGE")))


def columns_text(table: list[list[str]], *, squeeze: tuple[str, ...] = (), width: int | None = None,
                 gap: int = 3) -> str:
    """Rows in aligned columns, kubectl-style; the ``squeeze`` columns give way (…) to fit ``width``.

    Names, counts, phases and ages are never cut: they are what one reads and types.
    """
    import shutil

    width = width or shutil.get_terminal_size((80, 24)).columns
    header = table[0]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    over = sum(widths) + gap * (len(widths) - 1) - width
    for name in squeeze:
        if over <= 0:
            break
        i = header.index(name)
        cut = min(over, widths[i] - max(len(name), 12))
        if cut > 0:
            widths[i] -= cut
            over -= cut
    lines = []
    for row in table:
        cells = [str(c) if len(str(c)) <= w else str(c)[:w - 1] + "…"
                 for c, w in zip(row, widths, strict=True)]
        lines.append((" " * gap).join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(lines)


@app_app.command("status")
def status(name: Name, kubeconfig: Kubeconfig = None, context: Context = None,
           namespace: Namespace = None) -> None:
    """An App's conditions, its pods (node, restarts, age), its last 10 Events and its URL."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    async def main() -> int:
        console = Console(highlight=False, soft_wrap=True)
        async with session(kubeconfig, context, namespace) as s:
            app = await s.kube.get("App", name, s.namespace)
            if app is None:
                raise Usage("NAME", f"no App {name!r} in namespace {s.namespace}")
            pods = await pods_of(s, name)
            events = (await events_of(s, name))[-10:]
        st = app.get("status") or {}
        console.print(f"[bold]app/{name}[/] in {s.namespace}: {st.get('phase', 'Pending')}, ready "
                      f"{st.get('ready', '0/0')}, image {app['spec']['image']}")
        console.print(f"URL: {url_of(app)}")
        if st.get("externalUrl") and st.get("url"):
            console.print(f"In-cluster URL: {st['url']}")
        conditions = Table("CONDITION", "STATUS", "REASON", "MESSAGE", box=box.SIMPLE_HEAD, show_edge=False,
                           pad_edge=False, title="Conditions", title_justify="left")
        for c in st.get("conditions") or []:
            conditions.add_row(c.get("type"), c.get("status"), c.get("reason") or "", c.get("message") or "")
        console.print(conditions)
        table = Table("POD", "STATE", "RESTARTS", "NODE", "AGE", box=box.SIMPLE_HEAD, show_edge=False,
                      pad_edge=False, title="Replicas", title_justify="left")
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName") or "-"
            table.add_row(p["metadata"]["name"], pod_state(p), str(restarts(p)), node,
                          age(p["metadata"].get("creationTimestamp")))
        console.print(table if pods else "Replicas: none")
        ev = Table("AGE", "TYPE", "REASON", "OBJECT", "MESSAGE", box=box.SIMPLE_HEAD, show_edge=False,
                   pad_edge=False, title="Events (last 10)", title_justify="left")
        for e in events:
            obj = e.get("involvedObject") or {}
            ev.add_row(age(_event_time(e)), e.get("type") or "", e.get("reason") or "",
                       f"{str(obj.get('kind', '')).lower()}/{obj.get('name', '')}", e.get("message") or "")
        console.print(ev if events else "Events: none")
        return 0

    run(main())


@app_app.command("open")
def open_url(name: Name, kubeconfig: Kubeconfig = None, context: Context = None,
             namespace: Namespace = None) -> None:
    """Print the App's URL: the public one when exposed, else the in-cluster one."""

    async def main() -> int:
        async with session(kubeconfig, context, namespace) as s:
            app = await _existing(s, name)
        typer.echo(url_of(app))
        return 0

    run(main())


async def _existing(s: Session, name: str) -> dict[str, Any]:
    check_name(name)
    app = await s.kube.get("App", name, s.namespace)
    if app is None:
        raise Usage("NAME", f"no App {name!r} in namespace {s.namespace}")
    return app


def clean(app: Mapping[str, Any]) -> dict[str, Any]:
    """The App as one would keep it in git: no status, managed fields, uid or defaults."""
    from mothership.api.app import AppSpec

    meta = app["metadata"]
    out_meta: dict[str, Any] = {"name": meta["name"]}
    if meta.get("namespace"):
        out_meta["namespace"] = meta["namespace"]
    if meta.get("labels"):
        out_meta["labels"] = dict(meta["labels"])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not k.startswith(HIDDEN_ANNOTATIONS)}
    if annotations:
        out_meta["annotations"] = annotations
    spec = AppSpec.model_validate(app["spec"]).model_dump(by_alias=True, exclude_defaults=True, mode="json")
    spec = {"image": app["spec"]["image"], **spec}  # image first: it is what people look for
    return {"apiVersion": API_VERSION, "kind": "App", "metadata": out_meta, "spec": spec}


@app_app.command("export")
def export(
    name: Name,
    output: Annotated[str, typer.Option("--output", "-o", help="yaml or json.")] = "yaml",
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None,
) -> None:
    """Print the App as clean YAML (no status, managed fields or defaults), ready for git."""

    async def main() -> int:
        if output not in ("yaml", "json"):
            raise Usage("-o/--output", f"{output!r} is not one of yaml, json")
        async with session(kubeconfig, context, namespace) as s:
            app = await _existing(s, name)
        dump(clean(app), output)
        return 0

    run(main())


# --- changes -----------------------------------------------------------------------------------


@app_app.command("scale")
def scale(
    name: Name,
    replicas: Annotated[int | None, typer.Argument(help="Fixed replica count.")] = None,
    autoscale: Annotated[str | None, typer.Option(metavar="MIN:MAX", help="Scale on CPU instead.")] = None,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None,
) -> None:
    """Set a fixed replica count, or --autoscale MIN:MAX."""

    async def main() -> int:
        check_name(name)
        if (replicas is None) == (autoscale is None):
            raise Usage("REPLICAS/--autoscale", "give a replica count or --autoscale MIN:MAX, one of them")
        spec: dict[str, Any] = {"replicas": replicas, "autoscale": None}
        if autoscale is not None:
            spec = {"replicas": None, "autoscale": parse_autoscale(autoscale)}
        async with session(kubeconfig, context, namespace) as s:
            app = await _existing(s, name)
            validate_spec({**app["spec"], **{k: v for k, v in spec.items() if v is not None},
                           **{k: None for k, v in spec.items() if v is None}})
            await s.kube.patch("App", name, s.namespace, {"spec": spec}, field_manager=FIELD_MANAGER)
        scaled = f"{replicas} replicas" if replicas is not None else f"autoscale {autoscale}"
        typer.echo(f"app/{name} scaled to {scaled}")
        return 0

    run(main())


@app_app.command("restart")
def restart(name: Name, kubeconfig: Kubeconfig = None, context: Context = None,
            namespace: Namespace = None) -> None:
    """A rolling restart: new pods replace the old ones, as ``kubectl rollout restart`` does."""
    from mothership.apps.builders import child_name

    async def main() -> int:
        async with session(kubeconfig, context, namespace) as s:
            await _existing(s, name)
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            await s.kube.patch("Deployment", child_name(name), s.namespace,
                               {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}},
                               field_manager=FIELD_MANAGER)
        typer.echo(f"app/{name} restarting (rolling)")
        return 0

    run(main())


@env_app.command("set")
def env_set(
    name: Name,
    pairs: Annotated[list[str], typer.Argument(metavar="K=V...", help="Variables to set.")],
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None,
) -> None:
    """Set env vars (a rolling update); others are kept."""

    async def main() -> int:
        wanted = parse_env(pairs, "K=V")
        async with session(kubeconfig, context, namespace) as s:
            app = await _existing(s, name)
            env = [dict(e) for e in app["spec"].get("env") or []]
            for var in wanted:
                at = next((i for i, e in enumerate(env) if e["name"] == var["name"]), None)
                if at is None:
                    env.append(var)
                else:
                    env[at] = var
            await _patch_env(s, app, env)
        typer.echo(f"app/{name}: set {', '.join(v['name'] for v in wanted)} (rolling update)")
        return 0

    run(main())


@env_app.command("unset")
def env_unset(
    name: Name,
    keys: Annotated[list[str], typer.Argument(metavar="K...", help="Variables to remove.")],
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None,
) -> None:
    """Remove env vars (a rolling update)."""

    async def main() -> int:
        async with session(kubeconfig, context, namespace) as s:
            app = await _existing(s, name)
            env = [dict(e) for e in app["spec"].get("env") or []]
            missing = [k for k in keys if k not in {e["name"] for e in env}]
            if missing:
                raise Usage("K", f"not set on app/{name}: {', '.join(missing)}")
            await _patch_env(s, app, [e for e in env if e["name"] not in keys])
        typer.echo(f"app/{name}: unset {', '.join(keys)} (rolling update)")
        return 0

    run(main())


async def _patch_env(s: Session, app: Mapping[str, Any], env: list[dict[str, Any]]) -> None:
    validate_spec({**app["spec"], "env": env})
    await s.kube.patch("App", app["metadata"]["name"], s.namespace, {"spec": {"env": env or None}},
                       field_manager=FIELD_MANAGER)


@app_app.command("delete")
def delete(
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None,
) -> None:
    """Delete the App and everything it made (Deployment, Service, Ingress...); asks on a terminal."""

    async def main() -> int:
        async with session(kubeconfig, context, namespace) as s:
            await _existing(s, name)
            if not yes and interactive() and not typer.confirm(
                    f"Delete app/{name} in namespace {s.namespace}, its pods and its URL?"):
                typer.echo("Not deleted.")
                return EXIT_FAILED
            await s.kube.delete("App", name, s.namespace)
        typer.echo(f"app/{name} deleted")
        return 0

    run(main())


# --- logs ------------------------------------------------------------------------------------------


@app_app.command("logs")
def logs(
    name: Name,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming; follow new pods.")] = False,
    since: Annotated[str | None, typer.Option(help="Only lines newer than this, e.g. 10m.")] = None,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines of each pod.")] = None,
    previous: Annotated[bool, typer.Option("--previous", "-p", help="The previous (crashed) container's.")
                        ] = False,
    kubeconfig: Kubeconfig = None, context: Context = None, namespace: Namespace = None,
) -> None:
    """Every pod's logs, interleaved, each line prefixed by its short pod name, coloured per pod."""

    async def main() -> int:
        check_name(name)
        since_seconds = None if since is None else max(1, int(parse_timeout_flag(since, "--since")))
        if tail is not None and tail < 0:
            raise Usage("--tail", f"{tail} is negative")
        async with session(kubeconfig, context, namespace) as s:
            await _existing(s, name)
            await LogFollower(s, name, follow=follow, since=since_seconds, tail=tail,
                              previous=previous).run()
        return 0

    run(main())


def parse_timeout_flag(text: str, flag: str) -> float:
    try:
        return parse_timeout(text)
    except Usage:
        raise Usage(flag, f"{text!r} is not a duration (e.g. 30s, 10m, 2h)") from None


class LogFollower:
    """One stream per pod, printed as lines arrive; with ``follow``, pods come and go with the rollout."""

    def __init__(self, s: Session, app: str, *, follow: bool, since: int | None, tail: int | None,
                 previous: bool) -> None:
        from rich.console import Console

        self.s, self.app, self.follow = s, app, follow
        self.since, self.tail, self.previous = since, tail, previous
        self.console = Console(highlight=False, soft_wrap=True)
        self.errors = Console(stderr=True, highlight=False)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.colours: dict[str, str] = {}
        self.started = False

    async def run(self) -> None:
        await self._refresh(first=True)
        if not self.tasks:
            waiting = " yet: waiting for some" if self.follow else ""
            self.errors.print(f"app/{self.app} has no pods{waiting}")
        if not self.follow:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            return
        try:
            while True:
                await asyncio.sleep(1.0)
                await self._refresh(first=False)
        finally:
            for task in self.tasks.values():
                task.cancel()
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _refresh(self, *, first: bool) -> None:
        pods = {p["metadata"]["name"]: p for p in await pods_of(self.s, self.app)}
        for name, pod in pods.items():
            if name in self.tasks or (pod["metadata"].get("deletionTimestamp") and not first):
                continue
            self.colours[name] = COLOURS[len(self.colours) % len(COLOURS)]
            if not first:
                self._say(name, "[dim]+ new pod[/]")
            self.tasks[name] = asyncio.create_task(self._stream(name, whole=not first))
        for name in [n for n in self.tasks if n not in pods]:
            self.tasks.pop(name).cancel()
            self._say(name, "[dim]- pod gone[/]")

    def _say(self, pod: str, markup: str) -> None:
        from rich.text import Text

        self.console.print(Text.assemble((short(pod, self.app), self.colours.get(pod, "")), " | ")
                           + Text.from_markup(markup))

    async def _stream(self, pod: str, *, whole: bool) -> None:
        """Print ``pod``'s lines; a container not started yet is retried while following."""
        from rich.text import Text

        from mothership.kube import ApiError

        params = {"container": "app"}
        if self.follow:
            params["follow"] = "true"
        if self.previous:
            params["previous"] = "true"
        if self.tail is not None and not whole:
            params["tailLines"] = str(self.tail)
        if self.since is not None and not whole:
            params["sinceSeconds"] = str(self.since)
        prefix = Text.assemble((short(pod, self.app), self.colours[pod]), " | ")
        while True:
            try:
                async for line in self.s.kube.stream("Pod", pod, self.s.namespace, params=params):
                    self.console.print(prefix + Text(line.decode(errors="replace").rstrip("\n")))
                return
            except ApiError as exc:
                if not self.follow or exc.status not in (400, 0):
                    self.errors.print(f"{short(pod, self.app)}: no logs: {exc.message.strip()}")
                    return
            await asyncio.sleep(1.0)  # waiting to start: try again, as stern does
