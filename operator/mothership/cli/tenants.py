"""``mothership tenant``: create a Tenant (a namespace with guard rails), list them, read one.

A Tenant is cluster-scoped: creating one needs a cluster admin (or whoever may
create Tenants); its owners then get ``edit`` in its namespace, which is what
``mothership app`` needs there. ``create`` is a server-side apply under the
field manager ``mothership-cli``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from mothership.api.common import API_VERSION

from .session import (
    FIELD_MANAGER,
    Context,
    Kubeconfig,
    Usage,
    age,
    check_name,
    dump,
    interactive,
    run,
    session,
)

tenant_app = typer.Typer(no_args_is_help=True, help="Create and read Tenants: namespaces with guard rails.")

_SUBJECTS = {"user": "User", "group": "Group", "serviceaccount": "ServiceAccount", "sa": "ServiceAccount"}
_FLAGS = {"owners": "--owner", "quota": "--cpu/--memory", "isolation": "--isolation",
          "loadTests": "--max-workers/--allowed-target", "namespace": "--namespace-name"}
Name = Annotated[str, typer.Argument(help="The Tenant's name; its namespace has the same name.")]


def parse_owner(text: str) -> dict[str, str]:
    """``user:alice@example.com``, ``group:devs``, ``serviceaccount:ns/name`` (a bare name is a user)."""
    kind, sep, name = text.partition(":")
    if not sep:
        kind, name = "user", text
    subject = _SUBJECTS.get(kind.lower())
    if subject is None or not name:
        raise Usage("--owner", f"{text!r} is not user:NAME, group:NAME or serviceaccount:NS/NAME")
    owner = {"kind": subject, "name": name}
    if subject == "ServiceAccount" and "/" in name:
        owner["namespace"], owner["name"] = name.split("/", 1)
    return owner


def build_tenant(name: str, *, owners: list[str], cpu: str | None, memory: str | None, isolation: str | None,
                 max_workers: int | None, allowed_targets: list[str]) -> dict[str, Any]:
    """The Tenant ``create`` applies (only the fields the flags set), checked by the model first."""
    from pydantic import ValidationError

    from mothership.api.tenant import TenantSpec

    check_name(name)
    spec: dict[str, Any] = {}
    if owners:
        spec["owners"] = [parse_owner(o) for o in owners]
    quota = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    if quota:
        spec["quota"] = quota
    if isolation is not None:
        spec["isolation"] = {"mode": isolation}
    limits: dict[str, Any] = {}
    if max_workers is not None:
        limits["maxWorkers"] = max_workers
    if allowed_targets:
        limits["allowedTargets"] = allowed_targets
    if limits:
        spec["loadTests"] = limits
    try:
        TenantSpec.model_validate(spec)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(p) for p in error["loc"]]
        flag = _FLAGS.get(loc[0], "--" + loc[0]) if loc else "spec"
        if loc[:1] == ["quota"]:
            flag = "--memory" if "memory" in loc else "--cpu"
        if loc[:1] == ["loadTests"]:
            flag = "--max-workers" if "maxWorkers" in loc else "--allowed-target"
        value = error.get("input")
        raise Usage(flag, f"{str(error['msg']).removeprefix('Value error, ')} (got {value!r})") from None
    return {"apiVersion": API_VERSION, "kind": "Tenant", "metadata": {"name": name}, "spec": spec}


def _condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), {})


@tenant_app.command("create")
def create(
    name: Name,
    owner: Annotated[list[str] | None, typer.Option(
        metavar="KIND:NAME", help="user:alice@example.com, group:devs or serviceaccount:ns/name "
                                  "(repeatable); they get edit in the namespace.")] = None,
    cpu: Annotated[str | None, typer.Option(help="Quota: CPU requests in total, e.g. 8.")] = None,
    memory: Annotated[str | None, typer.Option(help="Quota: memory requests in total, e.g. 16Gi.")] = None,
    isolation: Annotated[str | None, typer.Option(help="strict (default-deny from other namespaces) or none.")
                         ] = None,
    max_workers: Annotated[int | None, typer.Option(help="Most worker pods one LoadTest may use.")] = None,
    allowed_target: Annotated[list[str] | None, typer.Option(
        metavar="PATTERN", help="A host LoadTests may aim at, e.g. '*.example.com' (repeatable).")] = None,
    wait: Annotated[bool | None, typer.Option("--wait/--no-wait", help="Wait until Ready "
                                              "(default: on a terminal).")] = None,
    kubeconfig: Kubeconfig = None, context: Context = None,
) -> None:
    """Create or update a Tenant: its namespace, quota, default-deny network policy and owners' access."""

    async def main() -> int:
        manifest = build_tenant(name, owners=owner or [], cpu=cpu, memory=memory, isolation=isolation,
                                max_workers=max_workers, allowed_targets=allowed_target or [])
        async with session(kubeconfig, context, None, check_namespace=False) as s:
            before = await s.kube.get("Tenant", name)
            tenant = await s.kube.apply(manifest, field_manager=FIELD_MANAGER)
            typer.echo(f"tenant/{name} {'created' if before is None else 'configured'}")
            if not (interactive() if wait is None else wait):
                return 0
            generation = tenant["metadata"].get("generation")
            for _ in range(120):
                tenant = await s.kube.get("Tenant", name) or tenant
                status = tenant.get("status") or {}
                ready = _condition(tenant, "Ready")
                accepted = _condition(tenant, "Accepted")
                if status.get("observedGeneration") == generation:
                    if accepted.get("status") == "False":
                        typer.echo(f"tenant/{name} refused: {accepted.get('reason')}: "
                                   f"{accepted.get('message')}", err=True)
                        return 1
                    if ready.get("status") == "True":
                        ns = status.get("namespace")
                        typer.echo(f"tenant/{name} is Ready: namespace {ns}; deploy with "
                                   f"`mothership app deploy NAME --image IMG -n {ns}`")
                        return 0
                await asyncio.sleep(0.5)
            typer.echo(f"tenant/{name} not Ready after 60s: {ready.get('reason')}: {ready.get('message')}",
                       err=True)
            return 1

    run(main())


def summary(t: Mapping[str, Any]) -> dict[str, Any]:
    """What ``list`` shows of a Tenant (the ``--output json`` record)."""
    spec, status = t.get("spec") or {}, t.get("status") or {}
    owners = [o.get("name") for o in spec.get("owners") or []]
    return {
        "name": t["metadata"]["name"], "namespace": status.get("namespace"),
        "owners": owners, "ready": _condition(t, "Ready").get("status", "Unknown"),
        "usage": status.get("usage") or {}, "created": t["metadata"].get("creationTimestamp"),
    }


@tenant_app.command("list")
def list_tenants(
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")] = "table",
    kubeconfig: Kubeconfig = None, context: Context = None,
) -> None:
    """List Tenants: namespace, owners, readiness, quota use and age."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    async def main() -> int:
        if output not in ("table", "json", "yaml"):
            raise Usage("-o/--output", f"{output!r} is not one of table, json, yaml")
        async with session(kubeconfig, context, None, check_namespace=False) as s:
            tenants = await s.kube.list("Tenant")
        rows = [summary(t) for t in sorted(tenants, key=lambda t: t["metadata"]["name"])]
        if output in ("json", "yaml"):
            dump(rows, output)
        elif not rows:
            typer.echo("No Tenants found.")
        else:
            table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
            for column in ("NAME", "NAMESPACE", "OWNERS", "READY", "CPU", "MEMORY", "AGE"):
                table.add_column(column, no_wrap=True, overflow="ellipsis")
            for r in rows:
                usage = r["usage"]
                table.add_row(r["name"], r["namespace"] or "-", ", ".join(r["owners"]) or "-", r["ready"],
                              usage.get("requests.cpu", "-"), usage.get("requests.memory", "-"),
                              age(r["created"]))
            Console(highlight=False).print(table)
        return 0

    run(main())


@tenant_app.command("status")
def status(name: Name, kubeconfig: Kubeconfig = None, context: Context = None) -> None:
    """A Tenant's guard rails, quota used/hard, its Apps and its running LoadTests."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from mothership.api.loadtest import FINAL_PHASES
    from mothership.api.tenant import TenantSpec

    async def main() -> int:
        console = Console(highlight=False)
        async with session(kubeconfig, context, None, check_namespace=False) as s:
            tenant = await s.kube.get("Tenant", name)
            if tenant is None:
                raise Usage("NAME", f"no Tenant {name!r}")
            ns = ((tenant.get("status") or {}).get("namespace")
                  or (tenant.get("spec") or {}).get("namespace") or name)
            quotas = await s.kube.list("ResourceQuota", ns)
            apps = await s.kube.list("App", ns)
            loadtests = await s.kube.list("LoadTest", ns)
        spec = TenantSpec.model_validate(tenant.get("spec") or {})
        ready = _condition(tenant, "Ready")
        console.print(f"[bold]tenant/{name}[/]: namespace {ns}, Ready {ready.get('status', 'Unknown')}"
                      + (f" ({ready.get('reason')}: {ready.get('message')})"
                         if ready.get("status") != "True" and ready.get("reason") else ""))
        owners = ", ".join(f"{o.kind.value.lower()}:{o.name}" for o in spec.owners) or "none"
        console.print(f"Owners (edit): {owners}")
        rails = Table("GUARD RAIL", "SETTING", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        rails.add_row("Pod Security", "restricted (enforced)")
        rails.add_row("Isolation", spec.isolation.mode.value + (
            " (default-deny from other namespaces)" if spec.isolation.mode.value == "strict" else ""))
        rails.add_row("LoadTest workers", f"at most {spec.load_tests.max_workers}")
        rails.add_row("LoadTest targets", ", ".join(spec.load_tests.allowed_targets) or "own Services only")
        console.print(rails)
        quota = Table("QUOTA", "USED", "HARD", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for q in quotas:
            hard = (q.get("status") or {}).get("hard") or (q.get("spec") or {}).get("hard") or {}
            used = (q.get("status") or {}).get("used") or {}
            for key in sorted(hard):
                quota.add_row(key, str(used.get(key, "?")), str(hard[key]))
        console.print(quota if quotas else "Quota: none")
        table = Table("APP", "IMAGE", "READY", "PHASE", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for a in sorted(apps, key=lambda a: a["metadata"]["name"]):
            st = a.get("status") or {}
            table.add_row(a["metadata"]["name"], a["spec"].get("image", ""), st.get("ready", "0/0"),
                          st.get("phase", "Pending"))
        console.print(table if apps else "Apps: none")
        running = [t for t in loadtests if (t.get("status") or {}).get("phase") not in FINAL_PHASES]
        lt = Table("LOADTEST", "PHASE", "AGE", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for t in running:
            lt.add_row(t["metadata"]["name"], (t.get("status") or {}).get("phase", "Pending"),
                       age(t["metadata"].get("creationTimestamp")))
        console.print(lt if running else "Running load tests: none")
        return 0

    run(main())
