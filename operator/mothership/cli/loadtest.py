"""``mothership loadtest``: run a load test locally, or follow and read one in a cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

loadtest_app = typer.Typer(no_args_is_help=True, help="Run, wait for and read load tests.")


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
