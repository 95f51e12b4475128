"""Versioned schema migrations: each entry moves the database one version forward, once.

A migration is a list of SQL statements run in one transaction with the version bump, so a
database is always at exactly one known version. Append new migrations; never edit old ones.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    # 1: accounts, keys, ledger, catalog, inventory, orders.
    [
        """CREATE TABLE accounts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE balances (
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL CHECK (env IN ('SANDBOX', 'PRODUCTION')),
            balance_cents INTEGER NOT NULL CHECK (balance_cents >= 0),
            PRIMARY KEY (account_id, env)
        )""",
        """CREATE TABLE api_keys (
            id INTEGER PRIMARY KEY,
            key_hash BLOB NOT NULL UNIQUE,
            key_hint TEXT NOT NULL,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL CHECK (env IN ('SANDBOX', 'PRODUCTION')),
            scope TEXT NOT NULL CHECK (scope IN ('READ-WRITE', 'READ-ONLY')),
            enabled INTEGER NOT NULL DEFAULT 1,
            allowed_ips TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE transactions (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL,
            type TEXT NOT NULL,
            operation TEXT NOT NULL,
            amount_cents INTEGER NOT NULL,
            old_balance_cents INTEGER NOT NULL,
            new_balance_cents INTEGER NOT NULL,
            objid TEXT,
            note TEXT NOT NULL,
            time TEXT NOT NULL
        )""",
        "CREATE INDEX transactions_by_account ON transactions (account_id, env, time, seq)",
        """CREATE TABLE products (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            category TEXT NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1,
            region TEXT,
            position INTEGER NOT NULL
        )""",
        """CREATE TABLE product_types (
            product_id TEXT NOT NULL REFERENCES products(id),
            id TEXT NOT NULL,
            name TEXT NOT NULL,
            price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
            sandbox_stock INTEGER NOT NULL CHECK (sandbox_stock >= 0),
            position INTEGER NOT NULL,
            PRIMARY KEY (product_id, id)
        )""",
        """CREATE TABLE orders (
            id TEXT PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL,
            key_id INTEGER NOT NULL REFERENCES api_keys(id),
            ref TEXT,
            product_id TEXT NOT NULL,
            type_id TEXT NOT NULL,
            quantity INTEGER NOT NULL CHECK (quantity > 0),
            price_cents INTEGER NOT NULL,
            status TEXT NOT NULL,
            fulfilled_quantity INTEGER,
            time TEXT NOT NULL,
            due_at REAL NOT NULL,
            final_at TEXT,
            UNIQUE (key_id, ref)
        )""",
        "CREATE INDEX orders_by_account ON orders (account_id, env, time, id)",
        "CREATE INDEX orders_handling ON orders (due_at) WHERE status = 'HANDLING'",
        # Every card, imported or sandbox-made. `secret` is the AES-GCM sealed (value, serial);
        # `fingerprint` a keyed hash of the value, so a code can be refused twice without
        # being readable. A card is sold when order_id is set, and only then.
        """CREATE TABLE cards (
            id INTEGER PRIMARY KEY,
            product_id TEXT NOT NULL,
            type_id TEXT NOT NULL,
            secret BLOB NOT NULL,
            fingerprint BLOB NOT NULL UNIQUE,
            order_id TEXT REFERENCES orders(id),
            position INTEGER,
            added_at TEXT NOT NULL
        )""",
        "CREATE INDEX cards_unsold ON cards (product_id, type_id, id) WHERE order_id IS NULL",
        "CREATE INDEX cards_by_order ON cards (order_id, position) WHERE order_id IS NOT NULL",
        "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
    # 2: orders placed in the same millisecond list in the order they were placed (rowid, which
    # every index entry ends with), not by their partly random ids.
    [
        "DROP INDEX orders_by_account",
        "CREATE INDEX orders_by_account ON orders (account_id, env, time)",
    ],
    # 3: card serials from a sequence, not MAX(id)+1 (seeded past every card id already used, so
    # no serial repeats); a ref is unique per account and environment, not per key (the index
    # refuses to build, and the migration rolls back, if two keys of one account already share
    # a ref in one environment).
    [
        """CREATE TABLE sequences (
            name TEXT PRIMARY KEY,
            value INTEGER NOT NULL CHECK (value >= 0)
        )""",
        "INSERT INTO sequences (name, value) SELECT 'card_serial', COALESCE(MAX(id), 0) FROM cards",
        "CREATE UNIQUE INDEX orders_by_ref ON orders (account_id, env, ref) WHERE ref IS NOT NULL",
    ],
    # 4: fulfilment is claimed from the database: a HANDLING order is leased to one process
    # (`lease_owner`) until `lease_until` (seconds since the epoch), then free to claim again.
    [
        "ALTER TABLE orders ADD COLUMN lease_owner TEXT",
        "ALTER TABLE orders ADD COLUMN lease_until REAL",
    ],
    # 5: signed webhooks: endpoints per key, the outbox of order events, deliveries, attempts.
    [
        # The endpoints of an API key; secrets sealed by the vault. Never deleted (REMOVED),
        # so the delivery log keeps naming them.
        """CREATE TABLE webhook_endpoints (
            id INTEGER PRIMARY KEY,
            key_id INTEGER NOT NULL REFERENCES api_keys(id),
            url TEXT NOT NULL,
            events TEXT NOT NULL,
            secret BLOB NOT NULL,
            previous_secret BLOB,
            previous_until REAL,
            status TEXT NOT NULL CHECK (status IN ('ENABLED', 'DISABLED', 'REMOVED')),
            disabled_reason TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX webhook_endpoints_by_key ON webhook_endpoints (key_id)",
        # The outbox: written in the transaction that makes an order final.
        """CREATE TABLE webhook_events (
            id TEXT PRIMARY KEY,
            key_id INTEGER NOT NULL,
            order_id TEXT NOT NULL,
            type TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE webhook_deliveries (
            event_id TEXT NOT NULL REFERENCES webhook_events(id),
            endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints(id),
            state TEXT NOT NULL
                CHECK (state IN ('PENDING', 'DELIVERED', 'FAILED', 'CANCELLED')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL,
            lease_owner TEXT,
            lease_until REAL,
            PRIMARY KEY (event_id, endpoint_id)
        )""",
        "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) "
        "WHERE state = 'PENDING'",
        """CREATE TABLE webhook_attempts (
            id INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL,
            endpoint_id INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            time TEXT NOT NULL,
            outcome TEXT NOT NULL,
            status_code INTEGER,
            latency_ms REAL,
            error TEXT
        )""",
        "CREATE INDEX webhook_attempts_by_event ON webhook_attempts (event_id, id)",
    ],
    # 6: mobile top-ups and internet recharges (one table, `kind` tells them apart), and OCPay
    # payment links. A top-up moves on at `due_at` (PENDING -> HANDLING -> final; QUEUED -> final),
    # claimed with a lease like an order; an internet card is sealed by the vault (`card_secret`).
    [
        """CREATE TABLE topups (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('MOBILE', 'INTERNET')),
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL CHECK (env IN ('SANDBOX', 'PRODUCTION')),
            key_id INTEGER NOT NULL REFERENCES api_keys(id),
            ref TEXT NOT NULL,
            plan_code TEXT NOT NULL,
            number TEXT NOT NULL,
            amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
            charge_cents INTEGER NOT NULL CHECK (charge_cents >= 0),
            status TEXT NOT NULL,
            outcome TEXT NOT NULL,
            created_at TEXT NOT NULL,
            due_at REAL,
            final_at TEXT,
            card_secret BLOB,
            num_trans TEXT,
            date_traitement TEXT,
            lease_owner TEXT,
            lease_until REAL
        )""",
        "CREATE UNIQUE INDEX topups_by_ref ON topups (account_id, env, kind, ref)",
        "CREATE INDEX topups_by_account ON topups (account_id, env, kind, created_at, seq)",
        "CREATE INDEX topups_due ON topups (due_at) WHERE due_at IS NOT NULL",
        """CREATE TABLE payment_links (
            seq INTEGER PRIMARY KEY,
            ref TEXT NOT NULL UNIQUE,
            account_id INTEGER NOT NULL REFERENCES accounts(id),
            env TEXT NOT NULL CHECK (env IN ('SANDBOX', 'PRODUCTION')),
            key_id INTEGER NOT NULL REFERENCES api_keys(id),
            title TEXT NOT NULL,
            description TEXT,
            amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
            fee_mode TEXT NOT NULL CHECK (fee_mode IN ('NO_FEE', 'SPLIT_FEE', 'CUSTOMER_FEE')),
            success_message TEXT,
            redirect_url TEXT,
            status TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'FAILED')),
            created_at TEXT NOT NULL,
            expires_at REAL NOT NULL,
            transaction_ref TEXT UNIQUE,
            paid_cents INTEGER,
            fee_cents INTEGER,
            net_cents INTEGER,
            payment_method TEXT,
            completed_at TEXT
        )""",
        "CREATE INDEX payment_links_by_account ON payment_links (account_id, env, created_at, seq)",
    ],
]
