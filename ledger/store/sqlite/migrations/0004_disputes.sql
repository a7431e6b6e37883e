-- Version 4: disputes (a chargeback's lifecycle) and the outbox of the
-- events the ledger produces (see the PostgreSQL migration).
CREATE TABLE disputes (
    id                 text PRIMARY KEY,
    payment_id         text NOT NULL,
    merchant_id        text NOT NULL,
    acquirer           text NOT NULL,
    acquirer_reference text NOT NULL,
    amount             integer NOT NULL CHECK (amount > 0),
    fee                integer NOT NULL CHECK (fee >= 0),
    currency           text NOT NULL,
    reason             text NOT NULL,
    status             text NOT NULL CHECK (status IN ('needs_response', 'under_review', 'won', 'lost')),
    version            integer NOT NULL CHECK (version >= 1),
    created_at         text NOT NULL,
    updated_at         text NOT NULL
);
CREATE INDEX disputes_merchant ON disputes (merchant_id, created_at, id);
CREATE INDEX disputes_payment ON disputes (payment_id);

CREATE TABLE event_outbox (
    seq             integer PRIMARY KEY AUTOINCREMENT,
    id              text NOT NULL UNIQUE,
    type            text NOT NULL,
    merchant_id     text NOT NULL,
    object_type     text NOT NULL,
    object_id       text NOT NULL,
    object_version  integer NOT NULL,
    data            text NOT NULL,
    created_at      text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    last_error      text NOT NULL DEFAULT ''
);
CREATE INDEX event_outbox_due ON event_outbox (status, next_attempt_at, seq);
