"""A real Kubernetes control plane for the test suite: etcd, kube-apiserver, kube-controller-manager.

Why: an emulator agrees with our own assumptions; the real API server's
admission plugins (ResourceQuota, PodSecurity, LimitRanger, ServiceAccount)
and the real Job, ReplicaSet, quota and garbage-collector controllers are the
only judges of how Kubernetes behaves. This is envtest's idea, without Docker:
upstream's own code, built from Go modules by ``main.go`` beside this file into
one multi-call binary, run as plain processes on 127.0.0.1. There are no nodes;
``tests/podrunner.py`` plays the kubelet where a test needs pods to run.

- :func:`binary` builds the binary once per (go.mod, go.sum, main.go, flags) and
  caches it outside the work tree (``$MOTHERSHIP_CACHE`` or
  ``~/.cache/mothership/controlplane/<key>/``), so a fresh clone on the same
  machine reuses it; Go's own build cache makes a rebuild mostly a link.
- :class:`ControlPlane` starts the three processes on free loopback ports in a
  temporary directory: certificates from ``cryptography`` (a CA, the serving
  certificate, client certificates for the admin and the controller manager),
  an ECDSA service-account key, RBAC authorization, a /16 service range. It
  waits for ``/readyz`` and for the controller manager's first work (the
  ``default`` ServiceAccount), writes an admin kubeconfig, and stops only the
  processes it started (they also die with their parent: PR_SET_PDEATHSIG).

Command line, for people and ``.ci/run``::

    python -m tests.controlplane build    # print the binary's path, building it if needed
    python -m tests.controlplane up DIR   # run until Ctrl-C; DIR/kubeconfig.yaml is the admin's
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CRDS = tuple(sorted((HERE.parents[1] / "crds").glob("*.yaml")))
"""Our generated CRDs, for ``ControlPlane.start(crds=CRDS)``."""
SOURCES = ("go.mod", "go.sum", "main.go")
SERVICE_RANGE = "10.96.0.0/16"
"""Room for 65k Services (the bench creates 500 at once); the first address is ``kubernetes``."""
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "mothership-test-admin"
OPERATOR_USER = "mothership-operator"
"""The operator's own identity: no groups, only what a test binds to it (the chart's ClusterRole)."""
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}
"""Every request the operator makes, as the authorizer saw it: the RBAC audit reads this log."""


def kubernetes_version() -> str:
    """The ``k8s.io/kubernetes`` version go.mod requires, e.g. ``v1.37.2``."""
    for line in (HERE / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[-2] == "k8s.io/kubernetes" and parts[-1].startswith("v1."):
            return parts[-1]
    raise RuntimeError("go.mod does not require k8s.io/kubernetes")


def _ldflags(version: str) -> str:
    """``-X`` flags so ``--version`` and the API's /version tell the truth, as upstream's build does."""
    major, minor = version.removeprefix("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return " ".join([
        "-s", "-w",
        f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
    ])


def build_command(output: Path) -> list[str]:
    return ["go", "build", "-trimpath", "-ldflags", _ldflags(kubernetes_version()), "-o", str(output), "."]


def cache_key() -> str:
    """A hash of what decides the binary's bytes: the module files and the build command."""
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes() + b"\0")
    digest.update(" ".join(build_command(Path("controlplane"))).encode())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    root = os.environ.get("MOTHERSHIP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mothership")
    return Path(root) / "controlplane" / cache_key()


def go_available() -> bool:
    return shutil.which("go") is not None


def binary(*, build: bool = True, log: Any = None) -> Path | None:
    """The cached binary; built first when missing and ``build`` (None without Go or a build)."""
    target = cache_dir() / "controlplane"
    if target.exists():
        return target
    if not build or not go_available():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; the second waits and reuses it
        if target.exists():
            return target
        partial = target.with_suffix(".partial")
        env = {**os.environ, "CGO_ENABLED": "0"}
        started = time.monotonic()
        print(f"controlplane: building {target} (k8s.io/kubernetes {kubernetes_version()}); "
              "the first build takes a while", file=log or sys.stderr, flush=True)
        subprocess.run(build_command(partial), cwd=HERE, env=env, check=True,
                       stdout=log or sys.stderr, stderr=log or sys.stderr)
        partial.rename(target)
        print(f"controlplane: built in {time.monotonic() - started:.0f} s", file=log or sys.stderr,
              flush=True)
    return target


# --- certificates ---------------------------------------------------------------------


@dataclass
class Pki:
    """PEM files in ``directory``: a CA and what the three processes and the tests present."""

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def create(self) -> Pki:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        self.directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        later = now + datetime.timedelta(days=2)

        def key(name: str) -> ec.EllipticCurvePrivateKey:
            k = ec.generate_private_key(ec.SECP256R1())
            self.path(f"{name}.key").write_bytes(k.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption()))
            return k

        ca_key = key("ca")
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mothership-test-ca")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(later)
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        self.path("ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

        def leaf(name: str, common_name: str, organisation: str | None = None, *,
                 server: bool = False) -> None:
            k = key(name)
            attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
            if organisation:
                attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
            builder = (x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(ca_name)
                       .public_key(k.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now).not_valid_after(later)
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
            if server:
                service_ip = next(ipaddress.ip_network(SERVICE_RANGE).hosts())
                builder = builder.add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default"), x509.DNSName("kubernetes.default.svc"),
                    x509.DNSName("kubernetes.default.svc.cluster.local"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(service_ip),
                ]), critical=False).add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            else:
                builder = builder.add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            self.path(f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

        leaf("apiserver", "kube-apiserver", server=True)
        leaf("admin", ADMIN_USER, "system:masters")
        leaf("controller-manager", "system:kube-controller-manager")
        leaf("operator", OPERATOR_USER)
        sa = ec.generate_private_key(ec.SECP256R1())
        self.path("sa.key").write_bytes(sa.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()))
        self.path("sa.pub").write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return self


def kubeconfig(server: str, pki: Pki, user: str) -> dict[str, Any]:
    """A kubeconfig with embedded-by-path credentials for ``user`` (a Pki leaf name)."""
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "controlplane",
        "clusters": [{"name": "controlplane", "cluster": {
            "server": server, "certificate-authority": str(pki.path("ca.crt"))}}],
        "users": [{"name": user, "user": {
            "client-certificate": str(pki.path(f"{user}.crt")),
            "client-key": str(pki.path(f"{user}.key"))}}],
        "contexts": [{"name": "controlplane", "context": {"cluster": "controlplane", "user": user}}],
    }


# --- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, so no control plane outlives a killed run."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager, started by :meth:`start`, stopped by :meth:`stop`."""

    workdir: Path
    binary: Path
    controller_manager: bool = True
    """Run kube-controller-manager (the Job, ReplicaSet, quota, GC, ... controllers)."""
    controller_manager_args: tuple[str, ...] = ()
    """Extra flags, e.g. ``("--controllers=*,-ttl-after-finished",)``."""
    crds: tuple[Path, ...] = ()
    """CRD manifests installed before the controller manager starts (see :meth:`start`)."""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    port: int = 0
    version: str = ""
    startup_seconds: float = 0.0

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin's kubeconfig (group ``system:masters``)."""
        return self.workdir / "kubeconfig.yaml"

    @property
    def pki(self) -> Pki:
        return Pki(self.workdir / "pki")

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def kubeconfig_for(self, user: str) -> Path:
        """A kubeconfig for one of the Pki's client certificates: ``admin``, ``operator``."""
        path = self.workdir / f"{user}.kubeconfig"
        if not path.exists():
            path.write_text(yaml.safe_dump(kubeconfig(self.server, self.pki, user)))
        return path

    def audit(self, user: str = OPERATOR_USER) -> list[dict[str, Any]]:
        """The audit events of ``user``'s completed requests so far (ResponseComplete), oldest first."""
        events = []
        if self.audit_log.exists():
            for line in self.audit_log.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("stage") == "ResponseComplete" and event["user"]["username"] == user:
                        events.append(event)
        return events

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def log_tail(self, name: str, size: int = 4000) -> str:
        path = self.log(name)
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    # --- starting ---

    @classmethod
    def start(cls, workdir: Path | None = None, *, controller_manager: bool = True,
              controller_manager_args: tuple[str, ...] = (), crds: tuple[Path, ...] = (),
              timeout: float = 120.0) -> ControlPlane:
        """Build (or reuse) the binary and start the control plane; raise with the logs if it fails.

        ``crds`` are installed (and Established) before kube-controller-manager starts, so its
        garbage collector and quota controller know them from the start, as in a cluster
        where the CRDs are old. Installed later, a CRD is discovered by those controllers
        only at their next discovery sync (30 s): owners of that kind are not collected,
        and quota admission refuses its objects ("status unknown for quota") until then.
        """
        path = binary()
        if path is None:
            raise RuntimeError("no control-plane binary and no Go to build it (tests/controlplane)")
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="controlplane-"))
        cp = cls(workdir=workdir, binary=path, controller_manager=controller_manager,
                 controller_manager_args=controller_manager_args, crds=crds)
        started = time.monotonic()
        try:
            cp._start(deadline=started + timeout)
        except BaseException:
            cp.stop()
            raise
        cp.startup_seconds = time.monotonic() - started
        return cp

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with self.log(name).open("ab") as out:
            process = subprocess.Popen([str(self.binary), name, *args], cwd=self.workdir, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       preexec_fn=_die_with_parent)
        self.processes[name] = process
        return process

    def _start(self, deadline: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.pki.create()
        etcd_port, peer_port = free_port(), free_port()
        etcd_config = {
            "name": "controlplane", "data-dir": str(self.workdir / "etcd"),
            "listen-client-urls": f"http://127.0.0.1:{etcd_port}",
            "advertise-client-urls": f"http://127.0.0.1:{etcd_port}",
            "listen-peer-urls": f"http://127.0.0.1:{peer_port}",
            "initial-advertise-peer-urls": f"http://127.0.0.1:{peer_port}",
            "initial-cluster": f"controlplane=http://127.0.0.1:{peer_port}",
            "log-level": "warn",
            "unsafe-no-fsync": True,  # test data: durability buys nothing, fsync costs seconds
            "quota-backend-bytes": 2 * 2**30,
        }
        (self.workdir / "etcd.yaml").write_text(yaml.safe_dump(etcd_config))
        self._spawn("etcd", "--config-file", str(self.workdir / "etcd.yaml"))
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"), deadline, "etcd", "etcd /health")

        self.port = free_port()
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.path('apiserver.crt')}",
            f"--tls-private-key-file={pki.path('apiserver.key')}",
            f"--client-ca-file={pki.path('ca.crt')}",
            # No aggregated API servers, but the controller manager's delegated authentication
            # reads this CA from kube-system and complains every 10 s when it is absent.
            f"--requestheader-client-ca-file={pki.path('ca.crt')}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.path('sa.pub')}",
            f"--service-account-signing-key-file={pki.path('sa.key')}",
            f"--service-cluster-ip-range={SERVICE_RANGE}",
            f"--audit-policy-file={self._audit_policy()}",
            f"--audit-log-path={self.audit_log}", "--audit-log-format=json", "--audit-log-maxsize=0",
            "--endpoint-reconciler-type=none",  # it refuses a loopback address; no pod needs the endpoint
            "--profiling=false",
        )
        admin = kubeconfig(self.server, pki, "admin")
        self.kubeconfig.write_text(yaml.safe_dump(admin))
        context = _ssl_context(pki, "admin")
        self._wait(lambda: _http_ok(f"{self.server}/readyz", context), deadline, "kube-apiserver",
                   "kube-apiserver /readyz")
        self.version = json.loads(_get(f"{self.server}/version", context))["gitVersion"]
        for path in self.crds:
            self._install_crd(yaml.safe_load(path.read_text()), context, deadline)

        if self.controller_manager:
            kcm_config = self.workdir / "controller-manager.kubeconfig"
            kcm_config.write_text(yaml.safe_dump(kubeconfig(self.server, pki, "controller-manager")))
            self._spawn(
                "kube-controller-manager",
                f"--kubeconfig={kcm_config}",
                f"--authentication-kubeconfig={kcm_config}",
                f"--authorization-kubeconfig={kcm_config}",
                "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.path('sa.key')}",
                f"--root-ca-file={pki.path('ca.crt')}",
                f"--cluster-signing-cert-file={pki.path('ca.crt')}",
                f"--cluster-signing-key-file={pki.path('ca.key')}",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--profiling=false",
                *self.controller_manager_args,
            )
            # The serviceaccount controller's first act: proof the controllers run, and pods can be created.
            self._wait(lambda: _http_ok(f"{self.server}/api/v1/namespaces/default/serviceaccounts/default",
                                        context), deadline, "kube-controller-manager",
                       "the default ServiceAccount (kube-controller-manager)")

    def _install_crd(self, crd: dict[str, Any], context: ssl.SSLContext, deadline: float) -> None:
        url = f"{self.server}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        request = urllib.request.Request(url, data=json.dumps(crd).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10, context=context):
            pass

        def established() -> bool:
            got = json.loads(_get(f"{url}/{crd['metadata']['name']}", context))
            return any(c["type"] == "Established" and c["status"] == "True"
                       for c in (got.get("status") or {}).get("conditions") or [])

        self._wait(established, deadline, "kube-apiserver", f"CRD {crd['metadata']['name']} Established")

    def _audit_policy(self) -> Path:
        path = self.workdir / "audit-policy.yaml"
        path.write_text(yaml.safe_dump(AUDIT_POLICY))
        return path

    def _wait(self, ready: Any, deadline: float, process: str, what: str) -> None:
        while not ready():
            proc = self.processes[process]
            if proc.poll() is not None:
                raise RuntimeError(f"{process} exited with {proc.returncode}:\n{self.log_tail(process)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}:\n{self.log_tail(process)}")
            time.sleep(0.1)  # polling the process's own readiness endpoint

    # --- stopping ---

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the processes this object started, newest first; SIGKILL what lingers."""
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        self.processes.clear()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ssl_context(pki: Pki, user: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.path("ca.crt")))
    context.load_cert_chain(str(pki.path(f"{user}.crt")), str(pki.path(f"{user}.key")))
    return context


def _get(url: str, context: ssl.SSLContext | None = None) -> bytes:
    with urllib.request.urlopen(url, timeout=2, context=context) as response:
        return bytes(response.read())


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        _get(url, context)
        return True
    except (OSError, urllib.error.URLError):
        return False


def main(argv: list[str]) -> int:
    if argv[:1] == ["build"]:
        path = binary()
        if path is None:
            print("controlplane: Go is not installed", file=sys.stderr)
            return 1
        print(path)
        return 0
    if argv[:1] == ["up"] and len(argv) == 2:
        with ControlPlane.start(Path(argv[1]).resolve()) as cp:
            print(f"controlplane: {cp.version} ready in {cp.startup_seconds:.1f} s; "
                  f"KUBECONFIG={cp.kubeconfig}", flush=True)
            signals = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, signals)
            signal.sigwait(signals)
        return 0
    print("usage: python -m tests.controlplane build | up DIR", file=sys.stderr)
    return 2
