"""``python -m tests.kubeemu``: the entry point bench/ scripts start."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_module_prints_its_url_writes_a_kubeconfig_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "x.yaml"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.kubeemu", "--port", "0", "--kubeconfig", str(kubeconfig)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        config = yaml.safe_load(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == url
        assert config["users"][0]["user"]["token"]
        with urllib.request.urlopen(f"{url}/version", timeout=5) as response:
            assert json.load(response)["major"] == "1"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
