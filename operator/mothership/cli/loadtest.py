"""``mothership loadtest``: run a load test locally, or follow and read one in a cluster."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer

from .session import Context, Kubeconfig, Namespace, Session, run, session

loadtest_app = typer.Typer(no_args_is_help=True, help="Run, wait for and read load tests.")


MAX_LOCAL_WORKERS = 256
"""Most worker processes ``loadtest run`` starts on one machine."""
STOP_SIGNALS = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM", "SIGHUP": "SIGHUP"}
"""Signals that stop a local run gracefully (partial summary, --out, exit 2); a second one aborts."""


def out_problem(path: Path, option: str = "--out") -> str | None:
    """Why ``--out PATH`` (or ``option``) cannot be written, checked before the test runs; None if it can."""
    if path.is_dir():
        return f"{option} {path}: is a directory"
    if path.exists() and not path.is_file():  # /dev/stdout, a FIFO, /dev/full: written in place
        return None if os.access(path, os.W_OK) else f"{option} {path}: not writable"
    folder = path.parent
    if not folder.is_dir():
        return f"{option} {path}: no such directory {folder}"
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        return f"{option} {path}: cannot write in {folder}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(probe)
    return None


def write_out(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: a temp file in the same folder, fsync, rename.

    An existing file is replaced only by a complete one, so a full disk or a
    file-size limit (``ulimit -f``) leaves it as it was. A path that exists but
    is not a regular file (``/dev/stdout``, a FIFO) is written in place.
    OSError on failure, with no temp file left behind.
    """
    if path.exists() and not path.is_file():
        with path.open("w") as f:
            f.write(text)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def target_problem(url: str) -> str | None:
    """Why ``--target URL`` cannot be loaded (scheme, host, port); None if it can."""
    from urllib.parse import urlsplit

    shown = url if len(url) <= 80 else url[:77] + "..."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"--target: not a valid URL: {shown!r}"
    if parts.scheme not in ("http", "https", "ws", "wss"):
        return f"--target must be an http(s) or ws(s) URL, not {shown!r}"
    if not parts.hostname:
        return f"--target must name a host, e.g. http://127.0.0.1:8089, not {shown!r}"
    if port == 0:
        return f"--target: port 0 cannot be loaded: {shown!r}"
    return None


@loadtest_app.command("run")
def loadtest_run(
    file: Annotated[Path, typer.Option("--file", "-f", help="The LoadTest YAML or JSON to run.")],
    workers: Annotated[
        int | None,
        typer.Option(help=f"Worker processes, 1 to {MAX_LOCAL_WORKERS}; default: the spec's worker count."),
    ] = None,
    target: Annotated[str | None, typer.Option(help="Base URL to load instead of spec.target.")] = None,
    demo_target: Annotated[
        bool, typer.Option("--demo-target", help="Start the bundled demo target on a free port and load it.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the result as JSON to this file (checked before the run; replaced whole "
                          "or left as it was)."),
    ] = None,
    live: Annotated[bool, typer.Option("--live/--no-live", help="Live view (on a terminal).")] = True,
    metrics_port: Annotated[
        int | None,
        typer.Option(metavar="BASE",
                     help="Worker i serves /metrics on 127.0.0.1:BASE+i (for Prometheus), BASE 1 to 65000; "
                          "default: free ports."),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Write a self-contained HTML report (charts, tables, spec) to this file "
                          "(checked before the run)."),
    ] = None,
    web: Annotated[
        bool, typer.Option("--web", help="Serve the report live on 127.0.0.1 as it runs, then until Ctrl-C.")
    ] = False,
    web_port: Annotated[
        int, typer.Option(help="The --web port on 127.0.0.1, 0 to 65535 (0: a free one).")
    ] = 8090,
) -> None:
    """Run a LoadTest with local worker processes; exit 0 if its thresholds pass, 1 if not, 2 otherwise.

    Ctrl-C, SIGTERM and SIGHUP stop the test: the partial summary is printed, --out is written, and
    the exit code is 2; a second signal aborts at once. Worker processes never outlive this one.

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
    from mothership.loadgen import report as pages
    from mothership.loadgen.coordinator import Coordinator, Result, Verdict
    from mothership.loadgen.local import CouldNotRun, run_local
    from mothership.loadgen.web import ReportServer
    from mothership.loadgen.worker import PlanError, read_plan

    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)

    def fail(message: str) -> typer.Exit:
        typer.echo(message, err=True)
        return typer.Exit(2)

    # Ranges are checked here, not by Typer, so a refusal is one line like every other.
    if workers is not None and not 1 <= workers <= MAX_LOCAL_WORKERS:
        raise fail(f"--workers must be 1 to {MAX_LOCAL_WORKERS}, not {workers}")
    if metrics_port is not None and not 1 <= metrics_port <= 65000:
        raise fail(f"--metrics-port must be 1 to 65000, not {metrics_port}")
    if not 0 <= web_port <= 65535:
        raise fail(f"--web-port must be 0 to 65535, not {web_port}")
    try:
        spec, name = read_plan(file)
    except PlanError as exc:
        raise fail(view.format_spec_errors(str(file), exc.lines)) from None
    if target is not None and demo_target:
        raise fail("use --target or --demo-target, not both")
    if target is not None and (problem := target_problem(target)):
        raise fail(problem)
    count = workers or spec.worker_count()
    if count > MAX_LOCAL_WORKERS:
        raise fail(f"{file}: {count} workers is more than a local run starts ({MAX_LOCAL_WORKERS}); "
                   "use --workers, or run it in a cluster")
    if problem := spec.capacity_problem(count):
        raise fail(f"{file}: {problem}" if workers is None else f"--workers {workers}: {problem}")
    if out is not None and (problem := out_problem(out)):
        raise fail(problem)
    if report is not None and (problem := out_problem(report, "--report")):
        raise fail(problem)
    base_url = target or spec.target.url
    title = f"{name or file.stem}: {count} worker{'s' * (count != 1)}"
    logging.basicConfig(level=logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=errors, show_path=False, show_time=False)])

    async def main() -> int:
        loop = asyncio.get_running_loop()
        coordinators: list[Coordinator] = []
        task = asyncio.current_task()
        assert task is not None

        stop_reasons: list[str] = []
        latest = [Result()]
        serving = asyncio.Event()
        """Set once the run is over and --web keeps serving the final page: a signal then ends it."""
        done_serving = asyncio.Event()

        def on_signal(signame: str) -> None:
            if serving.is_set():
                done_serving.set()
                return
            if stop_reasons:
                task.cancel()
                return
            errors.print(f"stopping on {STOP_SIGNALS[signame]} (again to abort)...")
            stop_reasons.append(f"stopped by {STOP_SIGNALS[signame]}")
            for coordinator in coordinators:
                coordinator.stop(stop_reasons[0])

        def on_coordinator(coordinator: Coordinator) -> None:
            """A signal while the workers were starting stops the test as soon as it can be."""
            coordinators.append(coordinator)
            if stop_reasons:
                coordinator.stop(stop_reasons[0])

        signals = [getattr(signal, s) for s in STOP_SIGNALS]
        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig.name)
        server = ReportServer(lambda: pages.render(latest[0], spec, title=title, live=True), port=web_port)
        try:
            try:
                if web:
                    try:
                        url = await server.start()
                    except OSError as exc:
                        raise CouldNotRun(f"--web-port {web_port}: {exc.strerror or exc}") from None
                    errors.print(f"live report: {url}", soft_wrap=True)
                with view.LiveView(console, spec, title=title,
                                   enabled=live and console.is_terminal) as live_view:

                    def on_update(update: Result) -> None:
                        latest[0] = update
                        live_view.update(update)

                    result, target_stats = await run_local(
                        spec, base_url=base_url, workers=count, loadtest=name or "local",
                        demo_target=demo_target, metrics_port=metrics_port,
                        on_update=on_update, on_coordinator=on_coordinator)
            except CouldNotRun as exc:
                typer.echo(f"could not run: {exc}", err=True)
                return 2
            latest[0] = result
            # Still under the handlers: a signal now waits for the summary and --out to be written.
            view.print_summary(console, result, title=title)
            if target_stats is not None:
                console.print(view.format_target_stats(target_stats))
            code = {Verdict.PASSED: 0, Verdict.FAILED: 1}.get(result.verdict or Verdict.ERRORED, 2)
            files: list[tuple[str, Path, str]] = []
            if out is not None:
                files.append(("--out", out, json.dumps(result.wire(), indent=2) + "\n"))
            if report is not None:
                files.append(("--report", report, pages.render(result, spec, title=title)))
            for option, path, text in files:
                try:
                    write_out(path, text)
                except OSError as exc:
                    typer.echo(f"{option} {path}: not written: {exc.strerror or exc}", err=True)
                    return 2
            if web:
                serving.set()
                errors.print(f"serving the final report on {server.url} until Ctrl-C", soft_wrap=True)
                await done_serving.wait()
            return code
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            await server.stop()

    try:
        code = uvloop.run(main())
    except asyncio.CancelledError:
        raise fail("aborted") from None
    raise typer.Exit(code)


@contextlib.asynccontextmanager
async def reading(name: str, namespace: str | None, kubeconfig: Path | None,
                  context: str | None) -> AsyncIterator[Session]:
    """The session ``wait``, ``results`` and ``report`` read LoadTest ``name`` in: a test that is not
    there, or an API error reading it, is one line naming it and exit 2."""
    from mothership.kube import ApiError
    from mothership.loadtests import client

    async with session(kubeconfig, context, namespace, check_namespace=False) as cluster:
        try:
            yield cluster
        except (client.NotFound, ApiError) as exc:
            typer.echo(f"loadtest {cluster.namespace}/{name}: {exc}", err=True)
            raise typer.Exit(client.EXIT_OTHER) from None


@loadtest_app.command("wait")
def loadtest_wait(
    name: Annotated[str, typer.Argument(help="The LoadTest's name.")],
    namespace: Namespace = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    timeout: Annotated[float, typer.Option(min=0, help="Give up (exit 2) after this many seconds.")] = 600,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final results.")] = False,
) -> None:
    """Follow a cluster LoadTest until it ends; exit 0 if it Passed, 1 if it Failed, 2 otherwise."""
    from mothership.api.loadtest import LoadTestStatus
    from mothership.loadtests import client

    def progress(status: LoadTestStatus) -> None:
        if not quiet:
            typer.echo(client.format_progress(status))

    async def main() -> int:
        async with reading(name, namespace, kubeconfig, context) as cluster:
            kube, ns = cluster.kube, cluster.namespace
            try:
                status = await client.follow(kube, ns, name, timeout=timeout, on_status=progress)
            except TimeoutError:
                typer.echo(f"loadtest {ns}/{name}: not finished after {timeout:g}s", err=True)
                return client.EXIT_OTHER
            results = await client.get_results(kube, ns, name)
        typer.echo(client.format_results(ns, name, status, results))
        return client.exit_code(status.phase)

    run(main(), server_error=client.EXIT_OTHER)


@loadtest_app.command("results")
def loadtest_results(
    name: Annotated[str, typer.Argument(help="The LoadTest's name.")],
    namespace: Namespace = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    """Print a cluster LoadTest's results (live while it runs, final once it ended)."""
    from mothership.loadtests import client

    if output not in ("table", "json"):
        typer.echo(f"--output must be table or json, not {output!r}", err=True)
        raise typer.Exit(client.EXIT_OTHER)
    async def main() -> int:
        async with reading(name, namespace, kubeconfig, context) as cluster:
            kube, ns = cluster.kube, cluster.namespace
            status, _ = await client.get_status(kube, ns, name)
            results = await client.get_results(kube, ns, name)
        render = client.format_json if output == "json" else client.format_results
        typer.echo(render(ns, name, status, results))
        return 0

    run(main(), server_error=client.EXIT_OTHER)


@loadtest_app.command("report")
def loadtest_report(
    name: Annotated[str, typer.Argument(help="The LoadTest's name.")],
    namespace: Namespace = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The HTML file to write.")
    ] = Path("report.html"),
) -> None:
    """Write a cluster LoadTest's report: the same self-contained HTML page as ``run --report``.

    Charts and the per-request table come from its results ConfigMap (kept after the pods are gone);
    without it, the page shows what the status holds.
    """
    from mothership.loadgen.report import render
    from mothership.loadtests import client

    async def main() -> int:
        async with reading(name, namespace, kubeconfig, context) as cluster:
            ns = cluster.namespace
            result, spec = await client.read_report(cluster.kube, ns, name)
        try:
            output.write_text(render(result, spec, title=f"LoadTest {ns}/{name}"))
        except OSError as exc:
            typer.echo(f"--output {output}: {exc.strerror or exc}", err=True)
            return client.EXIT_OTHER
        typer.echo(f"{output}: {result.verdict.value if result.verdict else 'running'}, "
                   f"{len(result.time_series)} points")
        return 0

    run(main(), server_error=client.EXIT_OTHER)
