"""Versioned migrations of the PostgreSQL schema (the same tables as SQLite's, in PostgreSQL's
types). Each entry moves the database one version forward, once, in one transaction with the
version bump, under an advisory lock so that processes starting together migrate once.

The money rules are the database's own: a balance is never negative (`CHECK`), a ref is unique
per account and environment, a card's fingerprint is unique, ids come from identity columns
and card serials from a sequence. Append new migrations; never edit old ones.
"""

from __future__ import annotations

MIGRATION_LOCK = 0x6F6364_737663  # pg_advisory_xact_lock key: one migrating process at a time

VERSION_TABLE = "service_schema"

MIGRATIONS: list[list[str]] = [
    # 1: accounts, keys, ledger, catalog, inventory, orders (with their fulfilment leases).
    [
        """CREATE TABLE accounts (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE balances (
            account_id BIGINT NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL CHECK (env IN ('SANDBOX', 'PRODUCTION')),
            balance_cents BIGINT NOT NULL CHECK (balance_cents >= 0),
            PRIMARY KEY (account_id, env)
        )""",
        """CREATE TABLE api_keys (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key_hash BYTEA NOT NULL UNIQUE,
            key_hint TEXT NOT NULL,
            account_id BIGINT NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL CHECK (env IN ('SANDBOX', 'PRODUCTION')),
            scope TEXT NOT NULL CHECK (scope IN ('READ-WRITE', 'READ-ONLY')),
            enabled BOOLEAN NOT NULL DEFAULT TRUE,
            allowed_ips TEXT[] NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE transactions (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            account_id BIGINT NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL,
            type TEXT NOT NULL,
            operation TEXT NOT NULL,
            amount_cents BIGINT NOT NULL,
            old_balance_cents BIGINT NOT NULL,
            new_balance_cents BIGINT NOT NULL,
            objid TEXT,
            note TEXT NOT NULL,
            time TEXT NOT NULL
        )""",
        "CREATE INDEX transactions_by_account ON transactions (account_id, env, time, seq)",
        """CREATE TABLE products (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            category TEXT NOT NULL,
            enabled BOOLEAN NOT NULL DEFAULT TRUE,
            region TEXT,
            position INTEGER NOT NULL
        )""",
        """CREATE TABLE product_types (
            product_id TEXT NOT NULL REFERENCES products(id),
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
            sandbox_stock INTEGER NOT NULL CHECK (sandbox_stock >= 0),
            position INTEGER NOT NULL,
            PRIMARY KEY (product_id, id)
        )""",
        """CREATE TABLE orders (
            seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
            id TEXT PRIMARY KEY,
            account_id BIGINT NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL,
            key_id BIGINT NOT NULL REFERENCES api_keys(id),
            ref TEXT,
            product_id TEXT NOT NULL,
            type_id TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity > 0),
            price_cents BIGINT NOT NULL,
            status TEXT NOT NULL,
            fulfilled_quantity INTEGER,
            time TEXT NOT NULL,
            due_at DOUBLE PRECISION NOT NULL,
            final_at TEXT,
            lease_owner TEXT,
            lease_until DOUBLE PRECISION
        )""",
        "CREATE INDEX orders_by_account ON orders (account_id, env, time, seq)",
        "CREATE INDEX orders_handling ON orders (due_at) WHERE status = 'HANDLING'",
        "CREATE UNIQUE INDEX orders_by_ref ON orders (account_id, env, ref) WHERE ref IS NOT NULL",
        """CREATE TABLE cards (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            product_id TEXT NOT NULL,
            type_id TEXT NOT NULL,
            secret BYTEA NOT NULL,
            fingerprint BYTEA NOT NULL UNIQUE,
            order_id TEXT REFERENCES orders(id),
            position INTEGER,
            added_at TEXT NOT NULL
        )""",
        "CREATE INDEX cards_unsold ON cards (product_id, type_id, id) WHERE order_id IS NULL",
        "CREATE INDEX cards_by_order ON cards (order_id, position) WHERE order_id IS NOT NULL",
        "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE SEQUENCE card_serials AS BIGINT",
    ],
    # 2: signed webhooks: endpoints per key, the outbox of order events, deliveries, attempts.
    [
        # The endpoints of an API key; secrets sealed by the vault. Never deleted (REMOVED),
        # so the delivery log keeps naming them.
        """CREATE TABLE webhook_endpoints (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key_id BIGINT NOT NULL REFERENCES api_keys(id),
            url TEXT NOT NULL,
            events TEXT NOT NULL,
            secret BYTEA NOT NULL,
            previous_secret BYTEA,
            previous_until DOUBLE PRECISION,
            status TEXT NOT NULL CHECK (status IN ('ENABLED', 'DISABLED', 'REMOVED')),
            disabled_reason TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX webhook_endpoints_by_key ON webhook_endpoints (key_id)",
        # The outbox: written in the transaction that makes an order final.
        """CREATE TABLE webhook_events (
            id TEXT PRIMARY KEY,
            key_id BIGINT NOT NULL,
            order_id TEXT NOT NULL,
            type TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        )""",
        """CREATE TABLE webhook_deliveries (
            event_id TEXT NOT NULL REFERENCES webhook_events(id),
            endpoint_id BIGINT NOT NULL REFERENCES webhook_endpoints(id),
            state TEXT NOT NULL
                CHECK (state IN ('PENDING', 'DELIVERED', 'FAILED', 'CANCELLED')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at DOUBLE PRECISION NOT NULL,
            lease_owner TEXT,
            lease_until DOUBLE PRECISION,
            PRIMARY KEY (event_id, endpoint_id)
        )""",
        "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) "
        "WHERE state = 'PENDING'",
        """CREATE TABLE webhook_attempts (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id TEXT NOT NULL,
            endpoint_id BIGINT NOT NULL,
            attempt INTEGER NOT NULL,
            time TEXT NOT NULL,
            outcome TEXT NOT NULL,
            status_code INTEGER,
            latency_ms DOUBLE PRECISION,
            error TEXT
        )""",
        "CREATE INDEX webhook_attempts_by_event ON webhook_attempts (event_id, id)",
    ],
    # 3: mobile top-ups and internet recharges (one table, `kind` tells them apart), and OCPay
    # payment links. A top-up moves on at `due_at` (PENDING -> HANDLING -> final; QUEUED -> final),
    # claimed with a lease like an order; an internet card is sealed by the vault (`card_secret`).
    [
        """CREATE TABLE topups (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('MOBILE', 'INTERNET')),
            account_id BIGINT NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL CHECK (env IN ('SANDBOX', 'PRODUCTION')),
            key_id BIGINT NOT NULL REFERENCES api_keys(id),
            ref TEXT NOT NULL,
            plan_code TEXT NOT NULL,
            number TEXT NOT NULL,
            amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
            charge_cents BIGINT NOT NULL CHECK (charge_cents >= 0),
            status TEXT NOT NULL,
            outcome TEXT NOT NULL,
            created_at TEXT NOT NULL,
            due_at DOUBLE PRECISION,
            final_at TEXT,
            card_secret BYTEA,
            num_trans TEXT,
            date_traitement TEXT,
            lease_owner TEXT,
            lease_until DOUBLE PRECISION
        )""",
        "CREATE UNIQUE INDEX topups_by_ref ON topups (account_id, env, kind, ref)",
        "CREATE INDEX topups_by_account ON topups (account_id, env, kind, created_at, seq)",
        "CREATE INDEX topups_due ON topups (due_at) WHERE due_at IS NOT NULL",
        """CREATE TABLE payment_links (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            ref TEXT NOT NULL UNIQUE,
            account_id BIGINT NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL CHECK (env IN ('SANDBOX', 'PRODUCTION')),
            key_id BIGINT NOT NULL REFERENCES api_keys(id),
            title TEXT NOT NULL,
            description TEXT,
            amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
            fee_mode TEXT NOT NULL CHECK (fee_mode IN ('NO_FEE', 'SPLIT_FEE', 'CUSTOMER_FEE')),
            success_message TEXT,
            redirect_url TEXT,
            status TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'FAILED')),
            created_at TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            transaction_ref TEXT UNIQUE,
            paid_cents BIGINT,
            fee_cents BIGINT,
            net_cents BIGINT,
            payment_method TEXT,
            completed_at TEXT
        )""",
        "CREATE INDEX payment_links_by_account ON payment_links (account_id, env, created_at, seq)",
    ],
]
