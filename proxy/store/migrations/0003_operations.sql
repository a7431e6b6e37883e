-- Gateway database, version 3: crash-safe money moves (one file for
-- PostgreSQL and SQLite).
--
-- payment_operations: every capture, cancel and refund is a row, state
-- 'processing', before the acquirer is called. Its id derives from the
-- merchant's Idempotency-Key (random without one), so a retry resumes the
-- same operation with the same acquirer idempotency key and the same
-- ledger event id; the sweeper resumes one whose request died.
-- payments.pending_op names the operation in flight (one at a time per
-- payment); payments.compensation lists the undo steps (reverse, release)
-- a final payment still owes, so that a crash or a shutdown never leaves
-- a hold or an authorization behind.
ALTER TABLE payments ADD COLUMN pending_op TEXT NOT NULL DEFAULT '';
ALTER TABLE payments ADD COLUMN compensation TEXT NOT NULL DEFAULT '';
CREATE INDEX payments_compensation ON payments (updated_at) WHERE compensation <> '';
CREATE TABLE payment_operations (
    id          TEXT PRIMARY KEY,
    payment_id  TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    amount      BIGINT NOT NULL DEFAULT 0,
    reason      TEXT NOT NULL DEFAULT '',
    request_hash TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL,
    error_code  TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX payment_operations_processing ON payment_operations (updated_at) WHERE state = 'processing';

-- Idempotency claims are leases: the owner renews lease_until while it
-- works; another process takes the key over only once the lease expired,
-- by compare-and-set on lease_version.
ALTER TABLE idempotency_keys ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE idempotency_keys ADD COLUMN lease_version BIGINT NOT NULL DEFAULT 0;
UPDATE idempotency_keys SET lease_until = created_at + 120000000 WHERE response = '';

-- The outbox is delivered by due time (exponential backoff per entry);
-- an entry the ledger refuses for good is 'dead' with its error code,
-- until an operator retries it (obol gateway outbox retry).
ALTER TABLE ledger_outbox ADD COLUMN state TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE ledger_outbox ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger_outbox ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
CREATE INDEX ledger_outbox_due ON ledger_outbox (next_attempt_at) WHERE state = 'pending';
