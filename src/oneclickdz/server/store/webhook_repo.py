"""The webhooks repository, one piece of SQL for both engines.

The queries are plain SQL that SQLite and PostgreSQL both read; only the parameter marker
differs (`?` for sqlite3, `%s` for psycopg) and, when claiming deliveries, PostgreSQL's
`FOR UPDATE SKIP LOCKED`, which lets claimants in several processes pass each other (SQLite's
one writer needs no such thing). Event types are kept as a comma-separated list per endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from oneclickdz.server.store.base import (
    AttemptRecord,
    DeliveryJob,
    DeliveryState,
    EndpointRecord,
    EndpointStatus,
    EventRecord,
)

_PENDING = DeliveryState.PENDING.value
_ENABLED = EndpointStatus.ENABLED.value
_REMOVED = EndpointStatus.REMOVED.value
_ENDPOINT_COLUMNS = (
    "id, key_id, url, events, secret, previous_secret, previous_until, status, "
    "disabled_reason, created_at"
)
_EVENT_COLUMNS = "id, key_id, order_id, type, payload, created_at"
# The endpoints of an event's key that take its type (parameters: key id, type).
_SUBSCRIBED = (
    f"FROM webhook_endpoints WHERE key_id = ? AND status = '{_ENABLED}' "
    "AND (',' || events || ',') LIKE ('%,' || ? || ',%')"
)


class _Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class _Connection(Protocol):
    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...


def endpoint_row(row: Sequence[Any]) -> EndpointRecord:
    return EndpointRecord(
        id=int(row[0]),
        key_id=int(row[1]),
        url=str(row[2]),
        events=tuple(filter(None, str(row[3]).split(","))),
        secret=bytes(row[4]),
        previous_secret=None if row[5] is None else bytes(row[5]),
        previous_until=None if row[6] is None else float(row[6]),
        status=EndpointStatus(row[7]),
        disabled_reason=row[8],
        created_at=str(row[9]),
    )


def event_row(row: Sequence[Any]) -> EventRecord:
    payload = row[4]
    return EventRecord(
        id=str(row[0]),
        key_id=int(row[1]),
        order_id=str(row[2]),
        type=str(row[3]),
        payload=payload.encode() if isinstance(payload, str) else bytes(payload),
        created_at=float(row[5]),
    )


def attempt_row(row: Sequence[Any]) -> AttemptRecord:
    return AttemptRecord(
        event_id=str(row[0]),
        endpoint_id=int(row[1]),
        attempt=int(row[2]),
        time=str(row[3]),
        outcome=str(row[4]),
        status_code=None if row[5] is None else int(row[5]),
        latency_ms=None if row[6] is None else float(row[6]),
        error=row[7],
    )


class SqlWebhooks:
    """`Webhooks` on one connection of either engine (`postgres`: psycopg's dialect)."""

    __slots__ = ("_c", "_postgres")

    def __init__(self, conn: _Connection, postgres: bool = False) -> None:
        self._c = conn
        self._postgres = postgres

    def _run(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        if self._postgres:
            sql = sql.replace("%", "%%").replace("?", "%s")
        cursor: _Cursor = self._c.execute(sql, tuple(params))
        return cursor

    # -- endpoints ---------------------------------------------------------------------------

    def add_endpoint(
        self, key_id: int, url: str, events: Sequence[str], secret: bytes, now: str
    ) -> int:
        row = self._run(
            "INSERT INTO webhook_endpoints (key_id, url, events, secret, status, created_at) "
            f"VALUES (?, ?, ?, ?, '{_ENABLED}', ?) RETURNING id",
            (key_id, url, ",".join(events), secret, now),
        ).fetchone()
        return int(row[0])

    def endpoint(self, endpoint_id: int) -> EndpointRecord | None:
        row = self._run(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
        ).fetchone()
        return None if row is None else endpoint_row(row)

    def endpoints(self, key_id: int | None = None) -> list[EndpointRecord]:
        where, params = (" AND key_id = ?", (key_id,)) if key_id is not None else ("", ())
        rows = self._run(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints "
            f"WHERE status != '{_REMOVED}'{where} ORDER BY id",
            params,
        ).fetchall()
        return [endpoint_row(r) for r in rows]

    def rotate(
        self, endpoint_id: int, secret: bytes, previous: bytes, previous_until: float
    ) -> bool:
        cur = self._run(
            "UPDATE webhook_endpoints SET secret = ?, previous_secret = ?, previous_until = ? "
            f"WHERE id = ? AND status != '{_REMOVED}' RETURNING id",
            (secret, previous, previous_until, endpoint_id),
        )
        return cur.fetchone() is not None

    def set_status(self, endpoint_id: int, status: EndpointStatus, reason: str | None) -> bool:
        cur = self._run(
            "UPDATE webhook_endpoints SET status = ?, disabled_reason = ? "
            f"WHERE id = ? AND status != '{_REMOVED}' RETURNING id",
            (status.value, reason, endpoint_id),
        )
        if cur.fetchone() is None:
            return False
        if status is not EndpointStatus.ENABLED:
            self._run(
                f"UPDATE webhook_deliveries SET state = '{DeliveryState.CANCELLED.value}', "
                f"lease_owner = NULL, lease_until = NULL "
                f"WHERE endpoint_id = ? AND state = '{_PENDING}'",
                (endpoint_id,),
            )
        return True

    # -- the outbox --------------------------------------------------------------------------

    def enqueue(
        self, event: EventRecord, owner: str | None = None, until: float | None = None
    ) -> None:
        self._run(
            f"INSERT INTO webhook_events ({_EVENT_COLUMNS}) "
            f"SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 {_SUBSCRIBED})",
            (
                event.id, event.key_id, event.order_id, event.type, event.payload.decode(),
                event.created_at, event.key_id, event.type,
            ),
        )  # fmt: skip
        self._run(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, state, attempts, next_at, "
            f"lease_owner, lease_until) SELECT ?, id, '{_PENDING}', 0, ?, ?, ? {_SUBSCRIBED}",
            (event.id, event.created_at, owner, until, event.key_id, event.type),
        )

    def claim_due(self, now: float, owner: str, until: float, limit: int) -> list[DeliveryJob]:
        skip_locked = " FOR UPDATE SKIP LOCKED" if self._postgres else ""
        self._run(
            "UPDATE webhook_deliveries SET lease_owner = ?, lease_until = ? "
            "WHERE (event_id, endpoint_id) IN (SELECT event_id, endpoint_id "
            f"FROM webhook_deliveries WHERE state = '{_PENDING}' AND next_at <= ? "
            f"AND (lease_until IS NULL OR lease_until <= ?) ORDER BY next_at LIMIT ?{skip_locked})",
            (owner, until, now, now, limit),
        )
        return self._jobs("d.lease_until = ?", (owner, until))

    def leased(self, event_ids: Sequence[str], owner: str) -> list[DeliveryJob]:
        if not event_ids:
            return []
        marks = ", ".join("?" * len(event_ids))
        return self._jobs(f"d.event_id IN ({marks})", (owner, *event_ids))

    def _jobs(self, where: str, params: Sequence[Any]) -> list[DeliveryJob]:
        """The pending deliveries leased to `params[0]` that match `where`, soonest first."""
        prefixed = ", ".join(f"p.{c}" for c in _ENDPOINT_COLUMNS.split(", "))
        events = ", ".join(f"e.{c}" for c in _EVENT_COLUMNS.split(", "))
        rows = self._run(
            f"SELECT d.attempts, {events}, {prefixed} FROM webhook_deliveries d "
            "JOIN webhook_events e ON e.id = d.event_id "
            "JOIN webhook_endpoints p ON p.id = d.endpoint_id "
            f"WHERE d.state = '{_PENDING}' AND d.lease_owner = ? AND {where} "
            "ORDER BY d.next_at",
            params,
        ).fetchall()
        return [
            DeliveryJob(event=event_row(r[1:7]), endpoint=endpoint_row(r[7:]), attempts=int(r[0]))
            for r in rows
        ]

    def next_due(self, now: float) -> float | None:
        row = self._run(
            f"SELECT next_at FROM webhook_deliveries WHERE state = '{_PENDING}' "
            "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY next_at LIMIT 1",
            (now,),
        ).fetchone()
        return None if row is None else float(row[0])

    def extend(self, event_id: str, endpoint_id: int, owner: str, until: float) -> bool:
        cur = self._run(
            "UPDATE webhook_deliveries SET lease_until = ? WHERE event_id = ? AND endpoint_id = ? "
            f"AND lease_owner = ? AND state = '{_PENDING}' RETURNING event_id",
            (until, event_id, endpoint_id, owner),
        )
        return cur.fetchone() is not None

    def record(self, attempt: AttemptRecord, state: DeliveryState, next_at: float | None) -> None:
        self._run(
            "INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, time, outcome, "
            "status_code, latency_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                attempt.event_id, attempt.endpoint_id, attempt.attempt, attempt.time,
                attempt.outcome, attempt.status_code, attempt.latency_ms, attempt.error,
            ),
        )  # fmt: skip
        self._run(  # a delivery cancelled meanwhile (its endpoint disabled) stays cancelled
            "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, "
            "next_at = COALESCE(?, next_at), lease_owner = NULL, lease_until = NULL "
            f"WHERE event_id = ? AND endpoint_id = ? AND state = '{_PENDING}'",
            (state.value, next_at, attempt.event_id, attempt.endpoint_id),
        )

    def event(self, event_id: str) -> EventRecord | None:
        row = self._run(
            f"SELECT {_EVENT_COLUMNS} FROM webhook_events WHERE id = ?", (event_id,)
        ).fetchone()
        return None if row is None else event_row(row)

    def replay(self, event_id: str, now: float) -> int:
        cur = self._run(
            f"UPDATE webhook_deliveries SET state = '{_PENDING}', next_at = ?, "
            "lease_owner = NULL, lease_until = NULL WHERE event_id = ? AND endpoint_id IN "
            f"(SELECT id FROM webhook_endpoints WHERE status = '{_ENABLED}') RETURNING endpoint_id",
            (now, event_id),
        )
        return len(cur.fetchall())

    def attempts(self, event_id: str | None, limit: int) -> list[AttemptRecord]:
        where, params = (" WHERE event_id = ?", (event_id,)) if event_id is not None else ("", ())
        rows = self._run(
            "SELECT event_id, endpoint_id, attempt, time, outcome, status_code, latency_ms, "
            f"error FROM webhook_attempts{where} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [attempt_row(r) for r in rows]
