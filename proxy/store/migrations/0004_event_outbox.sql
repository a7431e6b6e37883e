-- Gateway database, version 4: the merchant events outbox (one file for
-- PostgreSQL and SQLite). payment.authorized|captured|declined|failed|
-- canceled and refund.created are written here in the same transaction as
-- the payment's state change (Commit, FinishOperation); a relay delivers
-- them to eventsd, which dedupes them by id (derived from the payment and
-- its version). They hold the payment as the REST API answers it: no card
-- number, no token.
CREATE TABLE event_outbox (
    id              TEXT PRIMARY KEY,
    type            TEXT NOT NULL,
    merchant_id     TEXT NOT NULL,
    object_type     TEXT NOT NULL,
    object_id       TEXT NOT NULL,
    object_version  BIGINT NOT NULL,
    data            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX event_outbox_due ON event_outbox (state, next_attempt_at);
