"""Where a LoadTest may aim: in-namespace Services by default, patterns otherwise."""

from __future__ import annotations

import pytest

from mothership.api.loadtest import load_spec
from mothership.loadtests.targets import TargetNotAllowed, app_url, check, resolve


def spec(target: dict) -> object:
    return load_spec({
        "target": target,
        "scenarios": [{"name": "s", "requests": [{"path": "/"}]}],
        "virtualUsers": 1,
        "duration": "1s",
    })


def test_an_app_target_resolves_to_its_service_url_in_the_same_namespace() -> None:
    assert resolve(spec({"app": "shop"}), "team-a") == "http://shop.team-a.svc.cluster.local:80"


def test_a_url_target_resolves_to_itself() -> None:
    assert resolve(spec({"url": "http://127.0.0.1:8089"}), "team-a") == "http://127.0.0.1:8089"


@pytest.mark.parametrize("host", ["shop.team-a", "shop.team-a.svc", "shop.team-a.svc.cluster.local"])
def test_services_in_the_own_namespace_are_allowed_without_patterns(host: str) -> None:
    check(f"http://{host}:80/", "team-a", [])


@pytest.mark.parametrize("host", ["shop.team-b.svc.cluster.local", "shop", "example.com", "10.0.0.1"])
def test_anything_else_is_refused_by_default_naming_host_and_patterns(host: str) -> None:
    with pytest.raises(TargetNotAllowed, match=f"target host {host} is outside namespace team-a"):
        check(f"http://{host}/", "team-a", [])


def test_a_host_pattern_admits_matching_hosts_only() -> None:
    check("https://api.example.com/x", "team-a", ["*.example.com"])
    with pytest.raises(TargetNotAllowed, match=r"allowed: \*\.example\.com"):
        check("https://example.org/", "team-a", ["*.example.com"])


def test_a_host_port_pattern_pins_the_port() -> None:
    check("http://127.0.0.1:8089", "team-a", ["127.0.0.1:8089"])
    with pytest.raises(TargetNotAllowed):
        check("http://127.0.0.1:9000", "team-a", ["127.0.0.1:8089"])


def test_app_url_uses_service_port_80() -> None:
    assert app_url("a", "b").endswith(":80")
