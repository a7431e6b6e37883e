-- Gateway database, version 1 (one file for PostgreSQL and SQLite: portable
-- types; times are Unix microseconds). No card data: a payment holds its
-- token and PAN-free card metadata (brand, last4, fingerprint) only.
CREATE TABLE payments (
    id                 TEXT PRIMARY KEY,
    merchant_id        TEXT NOT NULL,
    status             TEXT NOT NULL,
    amount             BIGINT NOT NULL CHECK (amount > 0),
    amount_captured    BIGINT NOT NULL DEFAULT 0 CHECK (amount_captured >= 0 AND amount_captured <= amount),
    amount_refunded    BIGINT NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount_captured),
    currency           TEXT NOT NULL,
    token              TEXT NOT NULL,
    acquirer           TEXT NOT NULL,
    acquirer_reference TEXT NOT NULL DEFAULT '',
    card               TEXT NOT NULL DEFAULT '{}',
    risk               TEXT NOT NULL DEFAULT '{}',
    decline_code       TEXT NOT NULL DEFAULT '',
    description        TEXT NOT NULL DEFAULT '',
    metadata           TEXT NOT NULL DEFAULT '{}',
    refunds            TEXT NOT NULL DEFAULT '[]',
    fee                BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    version            BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX payments_merchant_created ON payments (merchant_id, created_at, id);

-- Idempotency: the first request with a key wins; its final answer is
-- replayed to retries. response is empty while the first request runs.
CREATE TABLE idempotency_keys (
    merchant_id  TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response     TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (merchant_id, key)
);
