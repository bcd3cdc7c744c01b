"""The test runner's decisions (tools/run_tests.py): where the servers are, when a throwaway
one may stand in, and what it tells a developer whose machine lacks something."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from tools.run_tests import (
    DEFAULT_CHROMIUM,
    POSTGRES,
    REDIS,
    Endpoint,
    SetupError,
    chromium_decision,
    endpoint_of,
    find_postgres_bindir,
    parse_args,
    pytest_exit_message,
    redis_answers,
    throwaway_redis,
    throwaway_url,
    unreachable_message,
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there now


def _fake_executables(bindir: Path, *names: str) -> None:
    bindir.mkdir(parents=True)
    for name in names:
        exe = bindir / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)


def test_it_reads_host_and_port_from_the_urls() -> None:
    assert endpoint_of(POSTGRES, "postgres://postgres@127.0.0.1:5499/agentmaestro") == Endpoint(
        "127.0.0.1", 5499
    )
    assert endpoint_of(REDIS, "redis://localhost/0") == Endpoint("localhost", 6379)
    assert endpoint_of(POSTGRES, "postgres://u:secret@db.example.com/x") == Endpoint(
        "db.example.com", 5432
    )


def test_it_rejects_a_url_without_host_or_with_a_bad_port() -> None:
    with pytest.raises(SetupError, match="DATABASE_URL"):
        endpoint_of(POSTGRES, "postgres:///agentmaestro")
    with pytest.raises(SetupError, match="not a valid URL"):
        endpoint_of(REDIS, "redis://127.0.0.1:notaport/0")


def test_only_loopback_servers_may_be_replaced_by_a_throwaway() -> None:
    assert Endpoint("127.0.0.1", 5432).is_loopback
    assert Endpoint("localhost", 5432).is_loopback
    assert not Endpoint("db.example.com", 5432).is_loopback


def test_the_throwaway_url_keeps_the_database_and_drops_credentials() -> None:
    assert (
        throwaway_url("postgres://alice:pw@127.0.0.1:5499/agentmaestro", 40001)
        == "postgres://postgres@127.0.0.1:40001/agentmaestro"
    )
    assert throwaway_url("redis://127.0.0.1:6398/3", 40002) == "redis://127.0.0.1:40002/3"


def test_the_missing_binaries_message_says_what_to_install() -> None:
    message = unreachable_message(POSTGRES, Endpoint("127.0.0.1", 5499))
    assert message == (
        "PostgreSQL is not reachable at 127.0.0.1:5499 and no local PostgreSQL binaries were "
        "found: install PostgreSQL (Debian: apt-get install postgresql) or set DATABASE_URL"
    )
    assert "apt-get install redis-server" in unreachable_message(REDIS, Endpoint("::1", 6379))


def test_a_remote_server_that_is_down_is_reported_not_installed() -> None:
    message = unreachable_message(REDIS, Endpoint("cache.example.com", 6379))
    assert "cache.example.com:6379" in message
    assert "install" not in message


def test_it_finds_the_newest_debian_postgresql_off_path(tmp_path: Path) -> None:
    for version in ("9.6", "15", "16"):
        _fake_executables(tmp_path / "lib" / version / "bin", "initdb", "pg_ctl", "postgres")
    _fake_executables(tmp_path / "lib" / "17" / "bin", "initdb")  # incomplete: skipped

    found = find_postgres_bindir(str(tmp_path / "empty"), str(tmp_path / "lib" / "*" / "bin"))

    assert found == tmp_path / "lib" / "16" / "bin"


def test_postgresql_on_path_wins_and_is_followed_through_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "opt" / "pg" / "bin"
    _fake_executables(real, "initdb", "pg_ctl", "postgres")
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "initdb").symlink_to(real / "initdb")
    _fake_executables(tmp_path / "lib" / "16" / "bin", "initdb", "pg_ctl", "postgres")

    found = find_postgres_bindir(str(on_path), str(tmp_path / "lib" / "*" / "bin"))

    assert found == real


def test_no_postgresql_binaries_anywhere(tmp_path: Path) -> None:
    assert find_postgres_bindir(str(tmp_path), str(tmp_path / "none" / "*" / "bin")) is None


def test_chromium_is_installed_only_by_root_with_apt() -> None:
    def absent(path: str) -> bool:
        return False

    def present(path: str) -> bool:
        return path == DEFAULT_CHROMIUM

    assert chromium_decision(None, exists=present, is_root=False, has_apt=False) == "use"
    assert chromium_decision(None, exists=absent, is_root=True, has_apt=True) == "install"
    message = chromium_decision(None, exists=absent, is_root=False, has_apt=True)
    assert "apt-get install chromium" in message
    assert "CHROMIUM_PATH" in message
    # A path the developer chose is never "fixed" by installing something elsewhere.
    chosen = chromium_decision("/opt/chrome", exists=absent, is_root=True, has_apt=True)
    assert chosen.startswith("CHROMIUM_PATH=/opt/chrome is not an executable file")


def test_pytest_collecting_nothing_is_a_failure_with_a_reason() -> None:
    assert pytest_exit_message(5) is not None
    assert pytest_exit_message(0) is None
    assert pytest_exit_message(1) is None


def test_unknown_arguments_go_to_pytest_in_order() -> None:
    args, rest = parse_args(["-q", "--no-lint", "tests/runs", "-k", "not slow", "-x"])
    assert args.no_lint
    assert rest == ["-q", "tests/runs", "-k", "not slow", "-x"]
    # No abbreviations: `--no` is pytest's business, not a short form of --no-lint.
    args, rest = parse_args(["--no"])
    assert not args.no_lint
    assert rest == ["--no"]


def test_nothing_listening_is_reported_as_unreachable_not_as_an_error() -> None:
    port = _closed_port()
    assert redis_answers(f"redis://127.0.0.1:{port}/0", Endpoint("127.0.0.1", port)) is False


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_throwaway_redis_answers_and_leaves_nothing_behind() -> None:
    server = shutil.which("redis-server")
    assert server is not None

    def workdirs() -> set[Path]:
        return set(Path(tempfile.gettempdir()).glob("agentmaestro-redis-*"))

    before = workdirs()
    with throwaway_redis(server, "redis://127.0.0.1:1/2") as url:
        where = endpoint_of(REDIS, url)
        assert url.endswith("/2")
        assert redis_answers(url, where)
        assert len(workdirs() - before) == 1
    assert redis_answers(url, where) is False
    assert workdirs() - before == set()
