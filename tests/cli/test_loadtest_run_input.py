"""``mothership loadtest run``: every bad input is one line naming what is wrong, and exit 2.

Before any worker starts where the input allows it (the file, ``--target``,
``--workers``, ``--out``), else as soon as the problem shows (a busy
``--metrics-port``). ``--out`` is written whole or not at all: a failure at the
end prints one line, keeps the verdict on stdout, exits 2 and leaves an
existing file as it was.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mothership.cli import app
from mothership.loadgen.worker import MAX_PLAN_BYTES, MAX_YAML_NODES
from tests.cli.test_loadtest_run import write_spec


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["loadtest", "run", *args], catch_exceptions=False)


def one_line(result: Any) -> str:
    """The one stderr line of a refused run (exit 2, nothing on stdout)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def doc(**changes: Any) -> dict[str, Any]:
    spec = {"target": {"url": "http://127.0.0.1:8089"}, "virtualUsers": 2, "duration": "1s",
            "scenarios": [{"name": "browse", "requests": [{"path": "/"}]}]}
    return {"apiVersion": "mothership.dev/v1alpha1", "kind": "LoadTest", "metadata": {"name": "x"},
            "spec": spec, **changes}


def test_a_binary_file_is_not_valid_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"kind: LoadTest\n\xff\xfe\x00\x81binary")
    assert one_line(run("-f", str(path))) == f"{path}: not valid UTF-8 text"


def test_a_yaml_alias_bomb_is_refused_quickly_and_nothing_is_echoed(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\nkind: *a8\n")  # 9**9 strings once expanded
    line = one_line(run("-f", str(path)))
    assert line == f"{path}: YAML aliases expand to more than {MAX_YAML_NODES:,} nodes; write the values out"


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("apiVersion: mothership.dev/v1alpha1\nkind: LoadTest\nmetadata: {name: x}\nspec:\n"
                    "  target: {url: 'http://127.0.0.1:1'}\n  virtualUsers: 1\n  duration: 1s\n"
                    "  scenarios:\n  - {name: a, requests: &r [{path: /}]}\n  - {name: b, requests: *r}\n"
                    "  workers: 300\n")
    assert "spec: workers must not exceed virtualUsers" in one_line(run("-f", str(path)))


def test_a_long_wrong_kind_is_echoed_cut(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc(kind="K" * 100_000)))
    line = one_line(run("-f", str(path)))
    assert line.startswith(f"{path}: kind: expected LoadTest, got 'KKK") and line.endswith("...")
    assert len(line) < 200


def test_a_file_over_4_mib_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("# " + "x" * MAX_PLAN_BYTES + "\n")
    assert one_line(run("-f", str(path))) == f"{path}: larger than 4 MiB; not a LoadTest"


def test_a_document_without_spec_says_spec_required(tmp_path: Path) -> None:
    body = doc()
    del body["spec"]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(body))
    assert one_line(run("-f", str(path))) == f"{path}: spec: required"


def test_another_api_version_is_refused_naming_ours(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc(apiVersion="apps/v1")))
    assert one_line(run("-f", str(path))) == (
        f"{path}: apiVersion: expected mothership.dev/v1alpha1, got 'apps/v1'")


def test_a_yaml_syntax_error_is_one_line_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("spec:\n  target: [1\n")
    line = one_line(run("-f", str(path)))
    assert line.startswith(f"{path}: not valid YAML or JSON: ") and "line 3, column 1" in line


@pytest.mark.parametrize("duration", ["0s", "0ms", "0m0s", "0.0s"])
def test_a_zero_duration_is_refused(tmp_path: Path, duration: str) -> None:
    path = write_spec(tmp_path, duration=duration)
    assert one_line(run("-f", str(path))) == f"{path}: spec.duration: must be more than 0s"


def test_more_virtual_users_than_the_workers_hold_is_refused_naming_the_fix(tmp_path: Path) -> None:
    path = write_spec(tmp_path, virtualUsers=10_000_000, workers=1)
    assert one_line(run("-f", str(path))) == (
        f"{path}: spec: 10000000 virtual users exceed workers * virtualUsersPerWorker = 1 * 1000 = 1000: "
        "lower the virtual users")
    path = write_spec(tmp_path, virtualUsers=5000)
    assert one_line(run("-f", str(path), "--workers", "2")) == (
        "--workers 2: 5000 virtual users exceed workers * virtualUsersPerWorker = 2 * 1000 = 2000: "
        "raise workers to 5 or virtualUsersPerWorker to 2500")


@pytest.mark.parametrize("url", ["http://", "http://:80", "ftp://host", "http://host:99999", "127.0.0.1:80"])
def test_a_target_without_a_host_or_scheme_is_refused_before_any_worker(tmp_path: Path, url: str) -> None:
    line = one_line(run("-f", str(write_spec(tmp_path)), "--target", url))
    assert line.startswith("--target") and repr(url) in line


def test_out_is_checked_before_the_test_runs(tmp_path: Path) -> None:
    spec = str(write_spec(tmp_path))
    missing = tmp_path / "nope" / "out.json"
    assert one_line(run("-f", spec, "--out", str(missing))) == (
        f"--out {missing}: no such directory {missing.parent}")
    assert one_line(run("-f", spec, "--out", str(tmp_path))) == f"--out {tmp_path}: is a directory"
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):  # root writes anywhere; the check is then moot
        return
    assert one_line(run("-f", spec, "--out", str(locked / "out.json"))).startswith(
        f"--out {locked / 'out.json'}: cannot write in {locked}: ")


def test_a_busy_metrics_port_is_one_clean_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("-f", str(Path(__file__).parents[2] / "examples" / "loadtest-local.yaml"),
                     "--demo-target", "--workers", "1", "--no-live", "--metrics-port", str(port))
    line = one_line(result)
    assert line == (f"could not run: worker 0 did not start: mothership worker: cannot listen on "
                    f"127.0.0.1:{port}: Address already in use")


def cli(*args: str, preexec: Any = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mothership", "loadtest", "run", *args],
                          capture_output=True, text=True, timeout=60, preexec_fn=preexec)


def test_an_io_error_at_the_end_keeps_the_verdict_and_exits_2(tmp_path: Path) -> None:
    spec = str(write_spec(tmp_path, duration="300ms"))
    done = cli("-f", spec, "--demo-target", "--workers", "1", "--no-live", "--out", "/dev/full")
    assert done.returncode == 2, done.stderr
    assert "PASSED" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "--out /dev/full: not written: No space left on device"


def test_a_file_size_limit_never_tears_an_existing_out_file(tmp_path: Path) -> None:
    import resource

    spec = str(write_spec(tmp_path, duration="300ms"))
    out = tmp_path / "out.json"
    out.write_text(json.dumps({"verdict": "passed", "kept": True}))
    before = out.read_text()

    def limit() -> None:  # `ulimit -f 1`: 1 KiB; the result JSON is larger
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    done = cli("-f", spec, "--demo-target", "--workers", "1", "--no-live", "--out", str(out), preexec=limit)
    assert done.returncode == 2, done.stderr
    assert "PASSED" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == f"--out {out}: not written: File too large"
    assert out.read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


@pytest.mark.parametrize(("option", "value", "line"), [
    ("--workers", "0", "--workers must be 1 to 256, not 0"),
    ("--workers", "257", "--workers must be 1 to 256, not 257"),
    ("--metrics-port", "65001", "--metrics-port must be 1 to 65000, not 65001"),
])
def test_an_option_out_of_range_is_one_line(tmp_path: Path, option: str, value: str, line: str) -> None:
    assert one_line(run("-f", str(write_spec(tmp_path)), option, value)) == line


def test_a_spec_needing_more_local_workers_than_a_machine_starts_is_refused(tmp_path: Path) -> None:
    path = write_spec(tmp_path, virtualUsers=300, virtualUsersPerWorker=1)
    assert one_line(run("-f", str(path))) == (
        f"{path}: 300 workers is more than a local run starts (256); use --workers, or run it in a cluster")
