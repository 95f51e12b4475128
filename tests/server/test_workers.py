"""`oneclickdz serve --workers N`: N processes on one port, supervised; real processes, real HTTP.

Which worker answered a request is read from the log: with the fault rule `ping:1:delay=0`
every ping is logged ("fault injected") with the worker's pid and the request id, then answered
normally. A stopped (SIGSTOP) worker cannot accept, so with one stopped the other must answer.
The services run on SQLite, then on PostgreSQL (`BOTH_ENGINES`): N processes on one database.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from oneclickdz.server.testing import Service, cli, free_port
from tests.server.helpers import client, ok, place, wait_final

Factory = Callable[..., Service]
T = TypeVar("T")

BOTH_ENGINES = True  # the service tests run on each engine (tests/conftest.py)
LOGGED_PINGS = ("--faults", "ping:1:delay=0")  # every ping logged with its worker's pid


def wait_for(probe: Callable[[], T | None], what: str, within: float = 15.0) -> T:
    """The first truthy answer of `probe`, polled; fails the test if none comes `within` s
    (a bound against hanging, far above the time the awaited event takes)."""
    deadline = time.monotonic() + within
    while True:
        if answer := probe():
            return answer
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux: /proc/PID/task/*/children)."""
    found: set[int] = set()
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        found.update(int(child) for child in path.read_text().split())
    return {child for child in found if alive(child)}


def workers(svc: Service, count: int = 2) -> set[int]:
    """The service's worker pids, once `count` of them run."""
    assert svc.process is not None
    parent = svc.process.pid

    def running() -> set[int] | None:
        pids = children(parent)
        return pids if len(pids) == count else None

    return wait_for(running, "the workers")


def events(svc: Service) -> list[dict[str, Any]]:
    return [json.loads(line) for line in svc.logs().splitlines() if line.startswith("{")]


def ping(svc: Service) -> str:
    """A ping over a new connection; the request id of its (successful) answer."""
    response = httpx.get(f"{svc.base_url}/ping", timeout=10.0)
    ok(response)
    return response.headers["x-request-id"]


def answered_by(svc: Service, request_id: str) -> int:
    """The pid of the worker that logged the request (see LOGGED_PINGS)."""
    pids = {e["pid"] for e in events(svc) if e.get("requestId") == request_id}
    assert len(pids) == 1, (request_id, pids)
    return int(pids.pop())


@contextmanager
def stopped(*pids: int) -> Iterator[None]:
    """These processes frozen (SIGSTOP) for the block, then continued whatever happens."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_two_workers_both_answer_on_one_port(service_factory: Factory) -> None:
    svc = service_factory(extra_args=("--workers", "2", *LOGGED_PINGS))
    first, second = sorted(workers(svc))
    with stopped(first):
        assert answered_by(svc, ping(svc)) == second
    with stopped(second):
        assert answered_by(svc, ping(svc)) == first
    assert svc.process is not None
    started = [e for e in events(svc) if e["event"] == "service started"]
    assert {e["pid"] for e in started} == {first, second}  # each built its own app
    assert {e["seed"] for e in started} == {1234, 1235}  # no two replay the same sandbox codes
    assert all(e["pid"] == svc.process.pid for e in events(svc) if "schema" in e["event"])


def test_a_killed_worker_is_replaced_and_the_service_keeps_answering(
    service_factory: Factory,
) -> None:
    svc = service_factory(extra_args=("--workers", "2", *LOGGED_PINGS))
    killed, survivor = sorted(workers(svc))
    os.kill(killed, signal.SIGKILL)
    ping(svc)
    assert svc.process is not None
    parent = svc.process.pid
    replacement = wait_for(
        lambda: (children(parent) - {survivor, killed}) if survivor in children(parent) else None,
        "a replacement worker",
    ).pop()
    with stopped(survivor):
        assert answered_by(svc, ping(svc)) == replacement
    died = [e for e in events(svc) if e.get("workerPid") == killed and e["level"] == "warning"]
    assert [(e["pid"], e["exitStatus"]) for e in died] == [(parent, "killed by SIGKILL")]
    assert f"worker {killed} died unexpectedly (killed by SIGKILL)" in died[0]["event"]


def test_sigterm_lets_requests_finish_stops_every_worker_and_exits_0(
    service_factory: Factory,
) -> None:
    svc = service_factory(
        extra_args=("--faults", "ping:1:delay=2"), env={"ONECLICKDZ_WORKERS": "2"}
    )
    pids = workers(svc)
    assert svc.process is not None
    process = svc.process
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(ping, svc)
        wait_for(lambda: any(e["event"] == "fault injected" for e in events(svc)), "the request")
        process.send_signal(signal.SIGTERM)
        request_id = in_flight.result()  # answered, although the stop came while it waited
    assert process.wait(timeout=30) == 0
    assert not [pid for pid in pids if alive(pid)]
    handler = answered_by(svc, request_id)
    waited = [e for e in events(svc) if e["event"].startswith("Waiting for connections")]
    assert [e["pid"] for e in waited] == [handler]
    exits = {e["workerPid"]: e["exitStatus"] for e in events(svc) if "exitStatus" in e}
    assert exits == dict.fromkeys(pids, "exit code 0")


def test_workers_stop_when_the_supervisor_is_killed(service_factory: Factory) -> None:
    svc = service_factory(extra_args=("--workers", "2"))
    pids = workers(svc)
    svc.kill()  # SIGKILL: the supervisor cannot stop them itself
    wait_for(lambda: not any(alive(pid) for pid in pids), "the orphaned workers to exit")


def test_one_worker_is_the_service_alone(service_factory: Factory) -> None:
    svc = service_factory(extra_args=("--workers", "1"))
    ping(svc)
    assert svc.process is not None
    assert children(svc.process.pid) == set()  # no supervisor: this process serves
    assert not [e for e in events(svc) if e["logger"] == "oneclickdz.server.workers"]


def test_worker_counts_outside_1_to_64_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    wide = {"COLUMNS": "250", "TERM": "dumb"}
    for count, bound in (("0", "greater than or equal to 1"), ("65", "less than or equal to 64")):
        proc = cli("serve", "--db", f"sqlite:///{db}", "--port", str(free_port()),
                   "--workers", count, env=wide)  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert "Invalid value for '--workers'" in proc.stderr
        assert bound in proc.stderr
    proc = cli("serve", "--db", f"sqlite:///{db}", "--port", str(free_port()),
               env={**wide, "ONECLICKDZ_WORKERS": "65"})  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "ONECLICKDZ_WORKERS" in proc.stderr
    assert not db.exists()


def test_a_busy_port_exits_10_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "never.db"
        proc = cli("serve", "--db", f"sqlite:///{db}", "--port", str(port), "--workers", "2")
    assert proc.returncode == 10, proc.stderr
    assert proc.stderr.strip().splitlines() == [  # no log line at all: no worker, no supervisor
        f"error: cannot listen on 127.0.0.1:{port}: the address is already in use"
    ]
    assert not db.exists()


def test_an_unreachable_redis_is_refused_once_before_any_worker_starts(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    proc = cli("serve", "--db", f"sqlite:///{db}", "--port", str(free_port()), "--workers", "2",
               "--redis", "redis://127.0.0.1:1/0")  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    lines = proc.stderr.strip().splitlines()  # one refusal, from the supervisor's process
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: cannot reach Redis at redis://127.0.0.1:1/0: "), lines
    assert not db.exists()


def test_workers_failing_at_start_up_stop_the_service_with_exit_1(tmp_path: Path) -> None:
    """A broken install that only the workers trip on (uvloop, imported when a worker starts
    its loop): restarted with a back-off, then the supervisor gives up and exits 1."""
    fake = tmp_path / "broken" / "uvloop"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('uvloop is broken (test)')\n")
    proc = cli("serve", "--db", f"sqlite:///{tmp_path / 'svc.db'}", "--port", str(free_port()),
               "--workers", "2", env={"PYTHONPATH": str(fake.parent)})  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: the workers keep failing at start-up (5 in a row"), lines
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    started = [
        e["workerPid"] for e in logged if e["event"].endswith(" started") and "workerPid" in e
    ]
    delays = [e["event"].rpartition(" in ")[2] for e in logged if "restarting" in e["event"]]
    assert sorted(set(delays)) == ["0.1 s", "0.2 s", "0.4 s", "0.8 s"]  # doubling back-off
    assert not [pid for pid in started if alive(pid)]


def test_an_order_placed_on_one_worker_is_finished_by_another(service_factory: Factory) -> None:
    """Fulfilment is claimed from the database: the worker that took the order can be frozen
    and another one still makes the order final."""
    svc = service_factory(extra_args=("--workers", "2"))
    key = svc.create_key(balance=10_000)
    taker, other = sorted(workers(svc))
    with stopped(other), client(svc, key) as api:
        order_id = place(api)
    with stopped(taker), client(svc, key) as api:
        assert wait_final(api, order_id)["status"] == "FULFILLED"
    final = [e for e in events(svc) if e["event"] == "order final" and e["orderId"] == order_id]
    assert [e["pid"] for e in final] == [other]
