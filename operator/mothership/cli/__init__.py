"""The ``mothership`` command: a thin shell over library functions.

One module per command group (``loadtest``, ``apps``, ``tenants``; ``session`` holds the
kubectl-style flags they share); the process-level commands
(``operator``, ``worker``, ``crds``, ``demo-target``) live here.

Each command parses its options, calls one function elsewhere and renders
the result; imports are local so ``mothership worker`` does not pay for kopf,
and ``mothership operator`` does not pay for the live view.
Exit codes for load tests: 0 thresholds passed, 1 a threshold failed,
2 invalid spec, could not run, or stopped.
"""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from .apps import app_app
from .loadtest import loadtest_app
from .tenants import tenant_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n\n")[0])
app.add_typer(loadtest_app, name="loadtest")
app.add_typer(app_app, name="app")
app.add_typer(tenant_app, name="tenant")


@app.command()
def crds(
    out: Annotated[Path, typer.Option(help="Folder for the CRD YAML, one file per kind.")] = Path("crds"),
    chart: Annotated[
        Path | None,
        typer.Option(help="Also write the chart's copy here: helm/mothership/files/crds, which the "
                          "chart's templates/crds.yaml renders (behind crds.install)."),
    ] = None,
) -> None:
    """Write the CRDs generated from the API models."""
    from mothership.api.crd import write_crds

    if chart is not None and chart.name == "crds" and (chart.parent / "Chart.yaml").exists():
        # Helm installs a chart's crds/ once and never upgrades it; files/crds/ is rendered by
        # templates/crds.yaml, so `helm upgrade` carries CRD changes.
        raise typer.BadParameter(
            f"use {chart.parent / 'files' / 'crds'}: Helm never upgrades a chart's crds/",
            param_hint="--chart",
        )
    for path in write_crds(out, chart):
        typer.echo(str(path))


@app.command()
def operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", metavar="NS",
                     help="Serve only this namespace (repeatable); default: all."),
    ] = None,
    peering: Annotated[
        str | None, typer.Option(help="kopf peering name, to run several replicas; default: standalone.")
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="Peering priority: highest works, others stand by (default random).")
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of /healthz and /metrics.")] = 8080,
    allowed_targets: Annotated[
        str | None,
        typer.Option(envvar="MOTHERSHIP_ALLOWED_TARGETS", metavar="PATTERN,...",
                     help="Global LoadTest target host patterns, comma-separated."),
    ] = None,
    worker_image: Annotated[
        str | None, typer.Option(envvar="MOTHERSHIP_WORKER_IMAGE", help="Image of LoadTest worker pods.")
    ] = None,
    pod_monitors: Annotated[
        bool,
        typer.Option("--pod-monitors/--no-pod-monitors",
                     help="Apply a PodMonitor per LoadTest when its CRD exists (off when the chart's does)."),
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG.")] = False,
) -> None:
    """Run the operator: Tenants, Apps and LoadTests, with /healthz and /metrics on --port.

    Credentials: in-cluster ServiceAccount, else $KUBECONFIG. The operator's own namespace,
    admitted by tenants' NetworkPolicies, comes from $MOTHERSHIP_NAMESPACE (default mothership-system).
    """
    from mothership.controller import Config, run

    targets = None
    if allowed_targets is not None:
        targets = tuple(t.strip() for t in allowed_targets.split(",") if t.strip())
    run(Config.from_env(
        namespaces=tuple(namespace or ()), peering=peering, priority=priority, port=port,
        allowed_targets=targets, worker_image=worker_image, pod_monitors=pod_monitors, verbose=verbose,
    ))


@app.command()
def worker(
    plan: Annotated[Path, typer.Option(help="The LoadTest YAML or JSON: a whole document or a bare spec.")],
    token_file: Annotated[Path, typer.Option(help="File holding the control token (Bearer).")],
    index: Annotated[
        int | None,
        typer.Option(min=0, envvar="JOB_COMPLETION_INDEX", help="This worker's index, 0-based."),
    ] = None,
    count: Annotated[
        int | None, typer.Option(min=1, help="Workers in the test; default: the spec's worker count.")
    ] = None,
    listen: Annotated[str, typer.Option(help="HOST:PORT for control and metrics; port 0 picks one.")] = (
        "0.0.0.0:8080"
    ),
    summary_file: Annotated[
        Path | None,
        typer.Option(help="Where the final summary goes; default /dev/termination-log if writable."),
    ] = None,
    loadtest: Annotated[
        str | None, typer.Option(help="LoadTest name for metric labels; default: metadata.name or local.")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Base URL to load, overriding spec.target (the operator resolves it).")
    ] = None,
    linger: Annotated[
        float, typer.Option(min=0, help="Seconds to keep serving /snapshot after the run, unless stopped.")
    ] = 60.0,
    ready_timeout: Annotated[
        float, typer.Option(min=0, help="Exit with code 3 if not started within this many seconds.")
    ] = 600.0,
) -> None:
    """Run one worker of a load test: wait for POST /start, run its share, report, linger, exit."""
    import logging
    import sys

    from mothership.loadgen import worker as w

    def usage(message: object) -> typer.Exit:
        typer.echo(f"mothership worker: {message}", err=True)
        return typer.Exit(w.EXIT_USAGE)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        spec, name = w.read_plan(plan)
        token = w.read_token(token_file)
        host, port = w.parse_listen(listen)
    except (w.PlanError, ValueError, OSError) as exc:
        raise usage(exc) from None
    count = count or spec.worker_count()
    index = 0 if index is None and count == 1 else index
    if index is None or index >= count:
        raise usage(f"--index (or JOB_COMPLETION_INDEX) must be in 0..{count - 1}")
    base_url = target or spec.target.url
    if base_url is None:
        raise usage("spec.target.app needs --target URL (the operator resolves it)")

    async def main() -> int:
        worker = w.Worker(
            spec, index, count, token=token, base_url=base_url, loadtest=loadtest or name or "local",
            summary_file=summary_file or w.default_summary_file(), linger=linger,
            ready_timeout=ready_timeout,
        )

        def announce(url: str) -> None:
            print(f"worker {index}/{count} listening on {url}", flush=True)

        return await w.serve(worker, host, port, announce)

    import uvloop

    try:
        code = uvloop.run(main())
    except w.ListenError as exc:
        raise usage(exc) from None
    raise typer.Exit(code)


@app.command("demo-target")
def demo_target(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one.")] = 8089,
) -> None:
    """Serve the bundled demo app (HTML, JSON, slow and failing endpoints, WebSocket echo and chat)."""
    from mothership.loadgen.demo_target import run_forever

    def announce(url: str) -> None:
        typer.echo(f"demo target listening on {url} (counts at {url}/stats)")

    _run_async(run_forever(host, port, announce))


def _run_async(coro: Coroutine[Any, Any, None]) -> None:
    """Run a command's coroutine on uvloop; Ctrl-C ends it quietly."""
    import contextlib

    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(coro)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
