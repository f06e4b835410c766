"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, controller manager and
scheduler.

Authentication is a static token file, authorization is RBAC only (no Node authorizer: there are
no kubelets), and TLS is verified against a CA made for the session. The controller manager runs
its controllers under their own service accounts (``--use-service-account-credentials``), the way
kubeadm clusters do, so RBAC is exercised for them too.
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.infra.binaries import Binaries
from tests.infra.kubeconfig import write_kubeconfig
from tests.infra.pki import ClusterPKI, make_cluster_pki
from tests.infra.processes import ManagedProcess, free_port, reap_all, wait_until

# Controllers a SOAR run touches (Jobs and their pods, owner-reference GC, namespaces, TTL
# cleanup), the ones that make namespaces usable (default service account, root CA config map),
# RBAC role aggregation (admin/edit/view pick up CRD rules), and the node lifecycle/taint
# eviction pair, so a node that stops heart-beating is treated as it would be in production.
DEFAULT_CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "ttl-after-finished-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "pod-garbage-collector-controller",
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "deployment-controller",
    "replicaset-controller",
)
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "soar-admin"
RESTRICTED_USER = "soar-restricted"


@dataclass(frozen=True)
class Identity:
    """A user of the static token file."""

    user: str
    token: str
    groups: tuple[str, ...] = ()


@dataclass
class ControlPlane:
    """Starts and stops the control plane; holds what clients need to reach it."""

    binaries: Binaries
    workdir: Path
    controllers: Sequence[str] = DEFAULT_CONTROLLERS
    startup_timeout: float = 90.0
    verbosity: int = 1
    processes: list[ManagedProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.workdir / "logs"
        self.admin = Identity(ADMIN_USER, secrets.token_hex(16), ("system:masters",))
        # Authenticated, bound to nothing: what any RBAC test starts from.
        self.restricted = Identity(RESTRICTED_USER, secrets.token_hex(16), ("soar-testers",))
        self._controller_manager = Identity("system:kube-controller-manager", secrets.token_hex(16))
        self._scheduler = Identity("system:kube-scheduler", secrets.token_hex(16))
        self.extra_identities: list[Identity] = []
        self.pki: ClusterPKI | None = None
        self.server = ""
        self.etcd_url = ""

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Starts every component in order, each one ready before the next; cleans up on error."""
        try:
            self.pki = make_cluster_pki(self.workdir / "pki")
            self._start_etcd()
            self._start_apiserver()
            self._start_controller_manager()
            self._start_scheduler()
            self._wait_for_default_service_account()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops the components in reverse start order; raises the first failure afterwards."""
        errors = reap_all(list(reversed(self.processes)))
        self.processes.clear()
        if errors:
            raise errors[0]

    # ----------------------------------------------------------------------------- clients
    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def restricted_kubeconfig(self) -> Path:
        return self.workdir / "restricted.kubeconfig"

    def kubeconfig_for(self, token: str, user: str, path: Path | None = None) -> Path:
        """A kubeconfig that talks to this cluster with ``token`` (any user, any token)."""
        assert self.pki is not None, "control plane not started"
        return write_kubeconfig(
            path or self.workdir / "kubeconfigs" / f"{user.replace(':', '_')}.kubeconfig",
            server=self.server,
            ca_cert=self.pki.ca_cert,
            token=token,
            user=user,
        )

    def api_client(self, kubeconfig: Path | None = None) -> k8s.ApiClient:
        """A kubernetes-client ApiClient for ``kubeconfig`` (default: admin)."""
        return k8s_config.new_client_from_config(
            config_file=str(kubeconfig or self.admin_kubeconfig)
        )

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Runs the built kubectl against this cluster; ``check`` raises with its stderr."""
        argv = [
            str(self.binaries.kubectl),
            "--kubeconfig",
            str(kubeconfig or self.admin_kubeconfig),
        ]
        proc = subprocess.run(
            [*argv, *args], input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        return proc

    # ----------------------------------------------------------------------------- components
    def _spawn(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.log_dir / f"{name}.log", env=env, cwd=self.workdir)
        self.processes.append(proc)
        return proc

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        proc = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=test={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # a throwaway store: durability buys nothing, fsync costs
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp:
                return json.load(resp).get("health") == "true"

        wait_until(healthy, timeout=self.startup_timeout, what="etcd /health", alive=proc)

    def _write_token_file(self) -> Path:
        path = self.workdir / "tokens.csv"
        identities = [
            self.admin,
            self.restricted,
            self._controller_manager,
            self._scheduler,
            *self.extra_identities,
        ]
        lines = []
        for ident in identities:
            groups = ",".join(ident.groups)
            lines.append(f'{ident.token},{ident.user},{ident.user},"{groups}"')
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def _start_apiserver(self) -> None:
        assert self.pki is not None
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        tokens = self._write_token_file()
        proc = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={self.pki.serving_cert}",
                f"--tls-private-key-file={self.pki.serving_key}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={self.pki.sa_public_key}",
                f"--service-account-signing-key-file={self.pki.sa_private_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                # The kubernetes Service's endpoints cannot point at a loopback address.
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                f"--v={self.verbosity}",
            ],
        )
        self.admin_kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.kubeconfig_for(self.admin.token, self.admin.user, self.admin_kubeconfig)
        self.kubeconfig_for(self.restricted.token, self.restricted.user, self.restricted_kubeconfig)
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))

        def ready() -> bool:
            req = urllib.request.Request(
                f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin.token}"}
            )
            with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
                return resp.status == 200

        wait_until(ready, timeout=self.startup_timeout, what="kube-apiserver /readyz", alive=proc)

    def _wait_healthz(self, proc: ManagedProcess, port: int) -> None:
        # These components serve a self-signed certificate from --cert-dir; /healthz is an
        # always-allowed path, so no credentials are needed either.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # a loopback health probe, nothing secret is sent

        def healthy() -> bool:
            url = f"https://127.0.0.1:{port}/healthz"
            with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
                return resp.status == 200

        wait_until(healthy, timeout=self.startup_timeout, what=f"{proc.name} /healthz", alive=proc)

    def _start_controller_manager(self) -> None:
        assert self.pki is not None
        port = free_port()
        kubeconfig = self.kubeconfig_for(
            self._controller_manager.token, self._controller_manager.user
        )
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki.sa_private_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                f"--controllers={','.join(self.controllers)}",
                f"--v={self.verbosity}",
            ],
        )
        self._wait_healthz(proc, port)

    def _start_scheduler(self) -> None:
        port = free_port()
        kubeconfig = self.kubeconfig_for(self._scheduler.token, self._scheduler.user)
        proc = self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--leader-elect=false",
                f"--v={self.verbosity}",
            ],
        )
        self._wait_healthz(proc, port)

    def _wait_for_default_service_account(self) -> None:
        """The service-account controller works: pods can be admitted in ``default``."""
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)
            wait_until(
                lambda: core.read_namespaced_service_account("default", "default"),
                timeout=self.startup_timeout,
                what="the default ServiceAccount (controller manager working)",
                alive=self.processes[-2],
            )


@dataclass(frozen=True)
class Kube:
    """What a test needs to act on the cluster: kubeconfigs, tokens and client helpers."""

    control_plane: ControlPlane

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (also exported as KUBECONFIG for the session)."""
        return self.control_plane.admin_kubeconfig

    @property
    def token(self) -> str:
        """The admin bearer token (group system:masters)."""
        return self.control_plane.admin.token

    @property
    def server(self) -> str:
        return self.control_plane.server

    @property
    def ca_cert(self) -> Path:
        assert self.control_plane.pki is not None
        return self.control_plane.pki.ca_cert

    @property
    def restricted(self) -> Identity:
        """An authenticated user (group soar-testers) with no RBAC bindings at all."""
        return self.control_plane.restricted

    @property
    def restricted_kubeconfig(self) -> Path:
        return self.control_plane.restricted_kubeconfig

    def kubeconfig_for(self, token: str, user: str, path: Path | None = None) -> Path:
        return self.control_plane.kubeconfig_for(token, user, path)

    def api_client(self, kubeconfig: Path | None = None) -> k8s.ApiClient:
        return self.control_plane.api_client(kubeconfig)

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Runs kubectl (admin unless ``kubeconfig``); ``check`` raises with its stderr."""
        return self.control_plane.kubectl(
            *args, input=input, kubeconfig=kubeconfig, check=check, timeout=timeout
        )

    def service_account_kubeconfig(
        self, namespace: str, name: str, *, expiration_seconds: int = 3600
    ) -> Path:
        """A kubeconfig for ServiceAccount ``namespace/name`` (created if missing), with a token
        from the TokenRequest API: the identity an in-cluster operator would have."""
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)
            try:
                core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
            except k8s.ApiException as exc:
                if exc.status != 409:
                    raise
            request = {"spec": {"expirationSeconds": expiration_seconds}}
            token = core.create_namespaced_service_account_token(name, namespace, request)
        user = f"system:serviceaccount:{namespace}:{name}"
        return self.kubeconfig_for(token.status.token, user)
