"""Where a LoadTest may aim: existing, non-ExternalName Services of its namespace, patterns otherwise."""

from __future__ import annotations

import pytest

from mothership.api.loadtest import load_spec
from mothership.loadtests.targets import (
    ServiceLookup,
    TargetNotAllowed,
    app_url,
    check,
    host_of,
    matching_pattern,
    resolve,
    service_named,
)

CLUSTER_IP = {"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10"}}
EXTERNAL = {"spec": {"type": "ExternalName", "externalName": "evil.example.com"}}


def spec(target: dict) -> object:
    return load_spec({
        "target": target,
        "scenarios": [{"name": "s", "requests": [{"path": "/"}]}],
        "virtualUsers": 1,
        "duration": "1s",
    })


def found(name: str, service: dict | None = CLUSTER_IP) -> ServiceLookup:
    return ServiceLookup.of(name, service)


def test_an_app_target_resolves_to_its_service_url_in_the_same_namespace() -> None:
    assert resolve(spec({"app": "shop"}), "team-a") == "http://shop.team-a.svc.cluster.local:80"


def test_a_url_target_resolves_to_itself() -> None:
    assert resolve(spec({"url": "http://127.0.0.1:8089"}), "team-a") == "http://127.0.0.1:8089"


def test_app_url_uses_service_port_80() -> None:
    assert app_url("a", "b").endswith(":80")


# --- parsing: which Service of the namespace a host names, if any -------------------------------


@pytest.mark.parametrize("host", [
    "shop.team-a", "shop.team-a.svc", "shop.team-a.svc.cluster.local",
    "SHOP.Team-A.SVC", "shop.team-a.svc.cluster.local.", "shop.team-a.",
])
def test_a_host_names_a_service_of_the_namespace_in_exactly_three_forms_any_case_one_trailing_dot(
        host: str) -> None:
    assert service_named(host, "team-a") == "shop"


@pytest.mark.parametrize("host", [
    "shop",                                   # bare: resolved by search path
    "shop.team-b", "shop.team-b.svc.cluster.local",  # another namespace
    "shop.team-a.svc.cluster",                # not one of the forms
    "shop.team-a.svc.example.com",
    "shop.team-a.svc.cluster.local.evil.com",
    "a.shop.team-a.svc.cluster.local",        # a pod of a headless Service, not a Service
    "evil.com.team-a",
    "shop.team-a..", ".team-a", "9shop.team-a", "-shop.team-a", "sh_op.team-a",
    "10.0.0.1", "::1", "",
])
def test_anything_else_names_no_service_of_the_namespace(host: str) -> None:
    assert service_named(host, "team-a") is None


@pytest.mark.parametrize(("host", "namespace", "name"), [
    ("anything.dev", "dev", "anything"),
    ("x.shop", "shop", "x"),
    ("google.app", "app", "google"),
    ("github.io", "io", "github"),
])
def test_a_public_domain_can_look_like_a_service_of_a_namespace_named_like_its_tld(
        host: str, namespace: str, name: str) -> None:
    """Why the parse alone never decides: only the API can tell a Service from a public domain."""
    assert service_named(host, namespace) == name


def test_the_host_is_read_the_way_the_workers_read_it() -> None:
    assert host_of("http://Shop.Team-A:8080/x") == "shop.team-a"
    assert host_of("http://shop.team-a@evil.example.com/") == "evil.example.com"
    assert host_of("http://[::1]:80/") == "::1"
    assert host_of("http://:80/") == ""


# --- the decision: in-namespace needs an existing, non-ExternalName Service ----------------------


@pytest.mark.parametrize("url", [
    "http://shop.team-a:80/", "http://shop.team-a.svc", "https://shop.team-a.svc.cluster.local:8443/x",
    "ws://SHOP.TEAM-A.SVC.CLUSTER.LOCAL.:80", "http://shop.team-a.:9090",
])
def test_an_existing_service_of_the_namespace_is_allowed_without_patterns(url: str) -> None:
    check(url, "team-a", [], found("shop"))


@pytest.mark.parametrize("kind", ["ClusterIP", "NodePort", "LoadBalancer"])
def test_every_service_type_but_external_name_is_in_namespace(kind: str) -> None:
    check("http://shop.team-a.svc", "team-a", [], found("shop", {"spec": {"type": kind}}))
    check("http://shop.team-a.svc", "team-a", [], found("shop", {"spec": {}}))  # ClusterIP by default


@pytest.mark.parametrize(("host", "namespace"), [
    ("anything.dev", "dev"), ("x.shop", "shop"), ("anything.app", "app"), ("anything.io", "io"),
])
def test_a_look_alike_public_host_is_refused_when_no_such_service_exists(host: str, namespace: str) -> None:
    name = host.split(".")[0]
    with pytest.raises(TargetNotAllowed) as refused:
        check(f"https://{host}/", namespace, [], found(name, None))
    message = str(refused.value)
    assert f"target host {host} is not in namespace {namespace}" in message
    assert f"Service {name} in namespace {namespace} does not exist" in message
    assert "none are allowed" in message and "spec.loadTests.allowedTargets" in message


def test_an_external_name_service_is_refused_naming_where_it_points() -> None:
    with pytest.raises(TargetNotAllowed) as refused:
        check("http://alias.team-a.svc.cluster.local", "team-a", [], found("alias", EXTERNAL))
    message = str(refused.value)
    assert "target host alias.team-a.svc.cluster.local is not in namespace team-a" in message
    assert "Service alias is an ExternalName Service (to evil.example.com)" in message
    assert "allowedTargets" in message


def test_without_a_lookup_or_with_one_for_another_name_nothing_is_in_namespace() -> None:
    with pytest.raises(TargetNotAllowed, match="Service shop in namespace team-a does not exist"):
        check("http://shop.team-a.svc", "team-a", [], None)
    with pytest.raises(TargetNotAllowed):
        check("http://shop.team-a.svc", "team-a", [], found("other"))


@pytest.mark.parametrize("host", ["shop.team-b.svc.cluster.local", "shop", "example.com", "10.0.0.1"])
def test_anything_else_is_refused_by_default_naming_host_and_rule(host: str) -> None:
    with pytest.raises(TargetNotAllowed, match=f"target host {host} is outside namespace team-a: "
                                                f"it names no Service of team-a"):
        check(f"http://{host}/", "team-a", [], None)


def test_a_bare_service_name_is_refused_even_when_the_service_exists() -> None:
    with pytest.raises(TargetNotAllowed, match="names no Service"):
        check("http://shop/", "team-a", [], found("shop"))


def test_a_target_without_a_host_is_refused() -> None:
    with pytest.raises(TargetNotAllowed, match="has no host"):
        check("http://:80/", "team-a", ["*"], None)


# --- patterns ------------------------------------------------------------------------------------


def test_a_host_pattern_admits_matching_hosts_only() -> None:
    check("https://api.example.com/x", "team-a", ["*.example.com"], None)
    with pytest.raises(TargetNotAllowed, match=r"allowed: \*\.example\.com"):
        check("https://example.org/", "team-a", ["*.example.com"], None)


def test_a_host_port_pattern_pins_the_port() -> None:
    check("http://127.0.0.1:8089", "team-a", ["127.0.0.1:8089"], None)
    with pytest.raises(TargetNotAllowed):
        check("http://127.0.0.1:9000", "team-a", ["127.0.0.1:8089"], None)
    assert matching_pattern("https://10.0.0.1/", ["10.0.0.1:443"]) == "10.0.0.1:443"
    assert matching_pattern("http://10.0.0.1/", ["10.0.0.1:443"]) is None


def test_patterns_are_matched_case_insensitively_and_ignore_blanks() -> None:
    assert matching_pattern("http://API.Example.COM/", [" ", "*.EXAMPLE.com "]) == "*.EXAMPLE.com "


def test_a_look_alike_or_external_name_target_may_still_be_allowed_by_a_pattern() -> None:
    check("https://anything.dev/", "dev", ["*.dev"], found("anything", None))
    check("http://alias.team-a.svc", "team-a", ["alias.team-a.svc"], found("alias", EXTERNAL))
