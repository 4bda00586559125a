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
        Path | None, typer.Option(help="Also write the chart's copy here (e.g. helm/mothership/crds).")
    ] = None,
) -> None:
    """Write the CRDs generated from the API models."""
    from mothership.api.crd import write_crds

    for path in write_crds(out, chart):
        typer.echo(str(path))


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
