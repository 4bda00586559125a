"""``python -m tests.kubeemu``: serve the emulator until interrupted (for bench/ and humans).

Prints the base URL on stdout (one line, flushed) and writes a kubeconfig if asked,
so a script can start it, read the URL, and point KUBECONFIG at the file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from .server import Emulator


async def serve(host: str, port: int, kubeconfig: str | None) -> None:
    emulator = Emulator()
    url = await emulator.start(host, port)
    if kubeconfig:
        emulator.write_kubeconfig(kubeconfig)
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.kubeemu", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the emulator here")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.kubeconfig))


if __name__ == "__main__":
    main()
