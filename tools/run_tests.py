"""Lint, type-check and run the test suite exactly as CI does: `./dev test [pytest args]`.

Phases, each under a `==> NAME` header, stopping at the first that fails:
  lint       ruff check . ; ruff format --check .
  typecheck  mypy (configured in pyproject.toml)
  services   PostgreSQL at DATABASE_URL and Redis at REDIS_URL must answer; if one does not and
             its binaries are installed, a throwaway server is started in a temp dir for this
             run only. Chromium must be at CHROMIUM_PATH (default /usr/bin/chromium); as root
             with apt-get it is installed.
  tests      python -m pytest with every argument this script does not know.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

ROOT = Path(__file__).resolve().parent.parent
PROBE_TIMEOUT = 2  # seconds; a local server answers in milliseconds
START_TIMEOUT = 30  # seconds for a throwaway server to come up
DEFAULT_CHROMIUM = "/usr/bin/chromium"
PYTEST_NO_TESTS = 5  # pytest's exit code for "no tests collected"

LINT = [["ruff", "check", "."], ["ruff", "format", "--check", "."]]
TYPECHECK = [["mypy"]]


class SetupError(Exception):
    """This machine cannot run the suite as it is; the message says what to do."""


@dataclass(frozen=True)
class Service:
    name: str
    env: str
    default_url: str
    default_port: int
    install: str


POSTGRES = Service(
    name="PostgreSQL",
    env="DATABASE_URL",
    default_url="postgres://postgres@127.0.0.1:5432/agentmaestro",
    default_port=5432,
    install="install PostgreSQL (Debian: apt-get install postgresql)",
)
REDIS = Service(
    name="Redis",
    env="REDIS_URL",
    default_url="redis://127.0.0.1:6379/0",
    default_port=6379,
    install="install Redis (Debian: apt-get install redis-server)",
)


# --- decisions (pure: tested in tests/test_run_tests.py) ------------------------------------


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        # Only a server meant to be on this machine may be replaced by a throwaway one: if a
        # remote server is down, testing against a local stand-in would hide that.
        return self.host in {"127.0.0.1", "localhost", "::1"}

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def endpoint_of(service: Service, url: str) -> Endpoint:
    try:
        parts = urlsplit(url)
        port = parts.port or service.default_port
    except ValueError as exc:
        raise SetupError(f"{service.env}={url!r} is not a valid URL: {exc}") from None
    if not parts.hostname:
        raise SetupError(f"{service.env}={url!r} names no host: use host:port, e.g. 127.0.0.1")
    return Endpoint(parts.hostname, port)


def throwaway_url(url: str, port: int) -> str:
    """`url` moved to 127.0.0.1:`port`, keeping its path (database name / Redis db number)."""
    parts = urlsplit(url)
    userinfo = "postgres@" if parts.scheme.startswith("postgres") else ""
    return f"{parts.scheme}://{userinfo}127.0.0.1:{port}{parts.path}"


def unreachable_message(service: Service, where: Endpoint) -> str:
    """Why we stop when nothing answers and no throwaway server can stand in."""
    if not where.is_loopback:
        return (
            f"{service.name} is not reachable at {where} ({service.env}): start it, "
            f"or point {service.env} at a server that answers"
        )
    return (
        f"{service.name} is not reachable at {where} and no local {service.name} binaries "
        f"were found: {service.install} or set {service.env}"
    )


def find_postgres_bindir(
    search_path: str | None = None, versioned_glob: str = "/usr/lib/postgresql/*/bin"
) -> Path | None:
    """A directory holding initdb and postgres: the one on PATH, else the newest
    Debian-style /usr/lib/postgresql/N/bin (Debian keeps them off PATH)."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb", path=search_path)
    if on_path:
        # Resolve symlinks: `postgres` lies next to the real initdb, not next to a link to it.
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(
        (Path(d) for d in glob.glob(versioned_glob)), key=_major_version, reverse=True
    )
    for bindir in candidates:
        if all(_is_executable(bindir / exe) for exe in ("initdb", "postgres")):
            return bindir
    return None


def _major_version(bindir: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in bindir.parent.name.split("."))
    except ValueError:
        return ()


def chromium_decision(
    configured: str | None, *, exists: Callable[[str], bool], is_root: bool, has_apt: bool
) -> str:
    """'use' (it is there), 'install' (we may apt-get it), or the message to stop with."""
    path = configured or DEFAULT_CHROMIUM
    if exists(path):
        return "use"
    if configured:
        return (
            f"CHROMIUM_PATH={configured} is not an executable file: "
            "install chromium there or fix CHROMIUM_PATH"
        )
    if is_root and has_apt:
        return "install"
    return (
        f"Chromium is not installed at {DEFAULT_CHROMIUM} (needed by the browser tests): "
        "install it (Debian: apt-get install chromium) or set CHROMIUM_PATH"
    )


def pytest_exit_message(code: int) -> str | None:
    if code == PYTEST_NO_TESTS:
        # pytest calls this a distinct outcome, not a failure; for us a green run that tested
        # nothing (a typo in a path, a broken conftest import) must not pass.
        return "pytest collected no tests: check the paths and -k/-m filters passed to it"
    return None


# --- small process helpers ------------------------------------------------------------------


def header(phase: str) -> None:
    print(f"==> {phase}", flush=True)


def _is_executable(path: Path | str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _listens(where: Endpoint) -> bool:
    """Whether anything accepts TCP connections there (as opposed to refused / timed out)."""
    try:
        with socket.create_connection((where.host, where.port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_logged(cmd: Sequence[str | Path], log: Path, what: str, **kwargs: Any) -> None:
    """Run a setup command quietly; on failure stop with its last lines of output."""
    with log.open("ab") as out:
        code = subprocess.call(
            [str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=out, stderr=out, **kwargs
        )
    if code != 0:
        raise SetupError(f"{what} failed (exit {code}); last lines of {log}:\n{_tail(log)}")


def wait_until(ready: Callable[[], bool], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            raise SetupError(f"{what} did not answer within {START_TIMEOUT} s:\n{_tail(log)}")
        time.sleep(0.1)


@contextmanager
def server_process(
    what: str,
    command: Sequence[str | Path],
    log: Path,
    *,
    ready: Callable[[], bool],
    stop_signal: signal.Signals,
    **kwargs: Any,
) -> Iterator[None]:
    """Run a server as our child until the block ends, however it ends."""
    with log.open("ab") as out:
        # A new session keeps Ctrl-C away from the server: pytest must drop its test database
        # before we stop the server, not find it gone.
        process = subprocess.Popen(
            [str(c) for c in command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            **kwargs,
        )
    try:

        def started() -> bool:
            if process.poll() is not None:
                raise SetupError(
                    f"{what} exited at start (exit {process.returncode}); "
                    f"last lines of {log}:\n{_tail(log)}"
                )
            try:
                return ready()
            except SetupError:
                return False  # "starting up" is a refusal too; the deadline catches real ones

        wait_until(started, what, log)
        yield
    finally:
        stop_process(process, stop_signal)
        print(f"    stopped {what}", flush=True)


# --- PostgreSQL -----------------------------------------------------------------------------


def postgres_answers(url: str, where: Endpoint) -> bool:
    """True if PostgreSQL lets us in, False if nothing listens there."""
    # Connect to the maintenance database: it is what pytest-django uses to create the test
    # database, and the one in DATABASE_URL need not exist.
    try:
        psycopg.connect(url, dbname="postgres", connect_timeout=PROBE_TIMEOUT).close()
    except psycopg.OperationalError as exc:
        if not _listens(where):
            return False
        # A server is there but refuses us (role, password, pg_hba): a throwaway would hide it.
        # libpq's message repeats host and port before the server's own words: keep those.
        reason = str(exc).strip().splitlines()[0].rsplit("failed: ", 1)[-1]
        raise SetupError(f"PostgreSQL at {where} answers but refuses us: {reason}") from None
    return True


def postgres_os_user() -> pwd.struct_passwd | None:
    """The user to run initdb/postgres as: None for a normal user; as root, `postgres`,
    because both refuse to run as root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise SetupError(
            "PostgreSQL is not reachable, and a throwaway one cannot start: running as root, "
            "PostgreSQL refuses root and there is no 'postgres' OS user "
            "(create one: useradd --system postgres) or set DATABASE_URL"
        ) from None


@contextmanager
def throwaway_postgres(bindir: Path, url: str) -> Iterator[str]:
    user = postgres_os_user()
    workdir = Path(tempfile.mkdtemp(prefix="agentmaestro-pg-"))
    as_user: dict[str, Any] = {"cwd": workdir}
    if user is not None:
        os.chown(workdir, user.pw_uid, user.pw_gid)
        as_user |= {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    data, port = workdir / "data", free_port()
    new_url = throwaway_url(url, port)
    print(f"    starting a throwaway PostgreSQL on 127.0.0.1:{port} in {workdir}", flush=True)
    try:
        run_logged(
            [bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            workdir / "initdb.log", "initdb", **as_user,
        )  # fmt: skip
        # `postgres` itself rather than `pg_ctl start`, so it stays our child: we can wait for
        # it, and it is reaped (PID 1 in a container may not reap an orphan). Durability is
        # pointless for a server deleted in a minute: fsync & co. are off to make it faster.
        command: list[str | Path] = [
            bindir / "postgres", "-D", data, "-p", str(port), "-k", workdir,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        with server_process(
            "the throwaway PostgreSQL",
            command,
            workdir / "server.log",
            ready=lambda: postgres_answers(new_url, Endpoint("127.0.0.1", port)),
            stop_signal=signal.SIGINT,  # "fast" shutdown: disconnects clients, no waiting
            **as_user,
        ):
            yield new_url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def ensure_postgres(stack: ExitStack) -> str:
    url = os.environ.get(POSTGRES.env) or POSTGRES.default_url
    where = endpoint_of(POSTGRES, url)
    if postgres_answers(url, where):
        print(f"    PostgreSQL answers at {where}", flush=True)
        return url
    bindir = find_postgres_bindir() if where.is_loopback else None
    if bindir is None:
        raise SetupError(unreachable_message(POSTGRES, where))
    print(f"    PostgreSQL is not reachable at {where}", flush=True)
    return stack.enter_context(throwaway_postgres(bindir, url))


# --- Redis ----------------------------------------------------------------------------------


def redis_answers(url: str, where: Endpoint) -> bool:
    """True if Redis answers PING, False if nothing listens there."""
    # No retries: redis-py 8 retries 3 times with backoff by default, which only delays
    # the answer to "is anything there?".
    client = redis.Redis.from_url(
        url,
        socket_timeout=PROBE_TIMEOUT,
        socket_connect_timeout=PROBE_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        if not _listens(where):
            return False
        raise SetupError(f"Redis at {where} answers but refuses us: {exc}") from None
    finally:
        client.close()
    return True


@contextmanager
def throwaway_redis(server: str, url: str) -> Iterator[str]:
    workdir = Path(tempfile.mkdtemp(prefix="agentmaestro-redis-"))
    port = free_port()
    new_url = throwaway_url(url, port)
    print(f"    starting a throwaway Redis on 127.0.0.1:{port} in {workdir}", flush=True)
    command = [
        server, "--save", "", "--appendonly", "no",
        "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
    ]  # fmt: skip
    try:
        with server_process(
            "the throwaway Redis",
            command,
            workdir / "server.log",
            ready=lambda: redis_answers(new_url, Endpoint("127.0.0.1", port)),
            stop_signal=signal.SIGTERM,
        ):
            yield new_url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def ensure_redis(stack: ExitStack) -> str:
    url = os.environ.get(REDIS.env) or REDIS.default_url
    where = endpoint_of(REDIS, url)
    if redis_answers(url, where):
        print(f"    Redis answers at {where}", flush=True)
        return url
    server = shutil.which("redis-server") if where.is_loopback else None
    if server is None:
        raise SetupError(unreachable_message(REDIS, where))
    print(f"    Redis is not reachable at {where}", flush=True)
    return stack.enter_context(throwaway_redis(server, url))


# --- Chromium -------------------------------------------------------------------------------


def ensure_chromium() -> str:
    configured = os.environ.get("CHROMIUM_PATH") or None
    decision = chromium_decision(
        configured,
        exists=_is_executable,
        is_root=os.geteuid() == 0,
        has_apt=shutil.which("apt-get") is not None,
    )
    if decision == "install":
        install_chromium()
    elif decision != "use":
        raise SetupError(decision)
    path = configured or DEFAULT_CHROMIUM
    print(f"    Chromium at {path}", flush=True)
    return path


def install_chromium() -> None:
    print("    installing Debian's chromium for the browser tests (apt-get, ~15 s)", flush=True)
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    log = Path(tempfile.gettempdir()) / "agentmaestro-apt-chromium.log"
    log.unlink(missing_ok=True)
    run_logged(["apt-get", "update"], log, "apt-get update", env=env)
    run_logged(
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
        log, "apt-get install chromium", env=env,
    )  # fmt: skip
    if not _is_executable(DEFAULT_CHROMIUM):
        raise SetupError(f"apt-get installed chromium but {DEFAULT_CHROMIUM} is not there")
    log.unlink()  # kept only when something went wrong


# --- phases ---------------------------------------------------------------------------------


def run_checks(phase: str, commands: Sequence[Sequence[str]]) -> int:
    """Run every command of a phase (all of them, so one run shows every problem)."""
    header(phase)
    worst = 0
    for command in commands:
        print(f"$ {' '.join(command)}", flush=True)
        # `python -m tool` runs the venv's copy whatever PATH says. mypy's Django plugin
        # loads the settings, which refuse to start without a SECRET_KEY once
        # DATABASE_URL names a server: type checking needs none, so give it a dummy.
        env = {"SECRET_KEY": "typecheck-only-" + "x" * 40, **os.environ}
        code = subprocess.call([sys.executable, "-m", *command], cwd=ROOT, env=env)
        worst = worst or code
    return worst


def stop_process(
    process: subprocess.Popen[Any], stop_signal: signal.Signals = signal.SIGTERM, grace: float = 10
) -> None:
    if process.poll() is None:
        process.send_signal(stop_signal)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_pytest(args: Sequence[str]) -> int:
    header("tests")
    process = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=ROOT)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached pytest too (same process group): let it tear down and drop its test
        # database before the throwaway servers under it are stopped.
        try:
            process.wait(timeout=30)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        raise
    except BaseException:
        stop_process(process)  # SIGTERM and the like reached only us: pass it on
        raise
    message = pytest_exit_message(code)
    if message:
        print(f"error: {message}", file=sys.stderr)
    return code


def prepare_environment(stack: ExitStack) -> None:
    """Export DATABASE_URL, REDIS_URL and CHROMIUM_PATH for the tests (defaults included,
    so tests/settings.py and the subprocesses tests start all see the same values)."""
    header("services")
    os.environ[POSTGRES.env] = ensure_postgres(stack)
    os.environ[REDIS.env] = ensure_redis(stack)
    os.environ["CHROMIUM_PATH"] = ensure_chromium()


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="./dev test",
        description="Lint, type-check and run the test suite exactly as CI does.",
        epilog=(
            "Every other argument goes to pytest, e.g. `./dev test --no-lint -q tests/runs -k "
            "append`. PostgreSQL and Redis are taken from DATABASE_URL and REDIS_URL (defaults "
            f"{POSTGRES.default_url}, {REDIS.default_url}); a local one that does not answer "
            "is replaced by a throwaway server for this run. Chromium: CHROMIUM_PATH "
            f"(default {DEFAULT_CHROMIUM})."
        ),
        # Without this, a pytest option could be taken for an abbreviation of ours.
        allow_abbrev=False,
    )
    parser.add_argument(
        "--no-lint",
        action="store_true",
        help="skip lint and type-check, for quick local iteration (CI never uses it)",
    )
    return parser.parse_known_args(argv)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    # Turn SIGTERM into an exception so the `finally` blocks stop the throwaway servers.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args, pytest_args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if not args.no_lint:
        for phase, commands in (("lint", LINT), ("typecheck", TYPECHECK)):
            code = run_checks(phase, commands)
            if code:
                print(f"error: {phase} failed (exit {code})", file=sys.stderr)
                return code
    try:
        with ExitStack() as stack:
            prepare_environment(stack)
            return run_pytest(pytest_args)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
