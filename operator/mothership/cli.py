"""The ``mothership`` command: a thin shell over library functions.

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

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n\n")[0])
loadtest_app = typer.Typer(no_args_is_help=True, help="Run, wait for and read load tests.")
app.add_typer(loadtest_app, name="loadtest")


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

    raise typer.Exit(uvloop.run(main()))


@loadtest_app.command("run")
def loadtest_run(
    file: Annotated[Path, typer.Option("--file", "-f", help="The LoadTest YAML or JSON to run.")],
    workers: Annotated[
        int | None, typer.Option(min=1, max=256, help="Worker processes; default: the spec's worker count.")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Base URL to load instead of spec.target.")] = None,
    demo_target: Annotated[
        bool, typer.Option("--demo-target", help="Start the bundled demo target on a free port and load it.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON to this file.")] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Live view (on a terminal).")] = True,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65000, metavar="BASE",
                     help="Worker i serves /metrics on 127.0.0.1:BASE+i (for Prometheus); default: free."),
    ] = None,
) -> None:
    """Run a LoadTest with local worker processes; exit 0 if its thresholds pass, 1 if not, 2 otherwise.

    No allow-list applies to a local run: the workers load whatever spec.target.url (or --target)
    names, from this machine, with your network access. In a cluster the operator enforces it: a
    LoadTest may aim only at an existing, non-ExternalName Service of its own namespace, or at a host
    matching the Tenant's spec.loadTests.allowedTargets (or the operator's --allowed-targets).
    """
    import asyncio
    import json
    import logging
    import signal

    import uvloop
    from rich.console import Console
    from rich.logging import RichHandler

    from mothership.loadgen import live as view
    from mothership.loadgen.coordinator import Coordinator, Result, Verdict
    from mothership.loadgen.local import CouldNotRun, run_local
    from mothership.loadgen.worker import PlanError, read_plan

    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)

    def fail(message: str) -> typer.Exit:
        typer.echo(message, err=True)
        return typer.Exit(2)

    try:
        spec, name = read_plan(file)
    except PlanError as exc:
        raise fail(view.format_spec_errors(str(file), exc.lines)) from None
    if target is not None and demo_target:
        raise fail("use --target or --demo-target, not both")
    if target is not None and not target.startswith(("http://", "https://", "ws://", "wss://")):
        raise fail(f"--target must be an http(s) or ws(s) URL, not {target!r}")
    count = workers or spec.worker_count()
    base_url = target or spec.target.url
    title = f"{name or file.stem}: {count} worker{'s' * (count != 1)}"
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=errors, show_path=False, show_time=False)])

    async def main() -> tuple[Result, dict[str, object] | None]:
        loop = asyncio.get_running_loop()
        coordinators: list[Coordinator] = []
        task = asyncio.current_task()
        assert task is not None

        def on_interrupt() -> None:
            if coordinators and not coordinators[0].stop_event.is_set():
                errors.print("stopping (Ctrl-C again to abort)...")
                coordinators[0].stop("stopped by Ctrl-C")
            else:
                task.cancel()

        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        try:
            with view.LiveView(console, spec, title=title, enabled=live and console.is_terminal) as live_view:
                return await run_local(spec, base_url=base_url, workers=count, loadtest=name or "local",
                                       demo_target=demo_target, metrics_port=metrics_port,
                                       on_update=live_view.update,
                                       on_coordinator=coordinators.append)
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    try:
        result, target_stats = uvloop.run(main())
    except CouldNotRun as exc:
        raise fail(f"could not run: {exc}") from None
    except asyncio.CancelledError:
        raise fail("aborted") from None
    view.print_summary(console, result, title=title)
    if target_stats is not None:
        console.print(view.format_target_stats(target_stats))
    if out is not None:
        out.write_text(json.dumps(result.wire(), indent=2) + "\n")
    raise typer.Exit({Verdict.PASSED: 0, Verdict.FAILED: 1}.get(result.verdict or Verdict.ERRORED, 2))


@loadtest_app.command("wait")
def loadtest_wait(
    name: Annotated[str, typer.Argument(help="The LoadTest's name.")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Its namespace; default: the context's.")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0, help="Give up (exit 2) after this many seconds.")] = 600,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final results.")] = False,
) -> None:
    """Follow a cluster LoadTest until it ends; exit 0 if it Passed, 1 if it Failed, 2 otherwise."""
    import asyncio

    from mothership.api.loadtest import LoadTestStatus
    from mothership.kube import ApiError, Kube
    from mothership.loadtests import client

    ns = namespace or client.default_namespace()

    def progress(status: LoadTestStatus) -> None:
        if not quiet:
            typer.echo(client.format_progress(status))

    async def main() -> int:
        async with Kube.connect() as kube:
            try:
                status = await client.follow(kube, ns, name, timeout=timeout, on_status=progress)
            except TimeoutError:
                typer.echo(f"loadtest {ns}/{name}: not finished after {timeout:g}s", err=True)
                return client.EXIT_OTHER
            except (client.NotFound, ApiError) as exc:
                typer.echo(f"loadtest {ns}/{name}: {exc}", err=True)
                return client.EXIT_OTHER
        typer.echo(client.format_results(ns, name, status))
        return client.exit_code(status.phase)

    raise typer.Exit(asyncio.run(main()))


@loadtest_app.command("results")
def loadtest_results(
    name: Annotated[str, typer.Argument(help="The LoadTest's name.")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Its namespace; default: the context's.")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    """Print a cluster LoadTest's results (live while it runs, final once it ended)."""
    import asyncio

    from mothership.kube import ApiError, Kube
    from mothership.loadtests import client

    if output not in ("table", "json"):
        typer.echo(f"--output must be table or json, not {output!r}", err=True)
        raise typer.Exit(client.EXIT_OTHER)
    ns = namespace or client.default_namespace()

    async def main() -> int:
        async with Kube.connect() as kube:
            try:
                status, _ = await client.get_status(kube, ns, name)
            except (client.NotFound, ApiError) as exc:
                typer.echo(f"loadtest {ns}/{name}: {exc}", err=True)
                return client.EXIT_OTHER
        render = client.format_json if output == "json" else client.format_results
        typer.echo(render(ns, name, status))
        return 0

    raise typer.Exit(asyncio.run(main()))


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
