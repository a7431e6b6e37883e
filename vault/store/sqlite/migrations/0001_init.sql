-- Vault database (SQLite, embedded default), version 1. Times are RFC 3339 UTC text;
-- allowed_origins is a JSON array. No column ever holds a PAN or CVC in clear:
-- card data lives only in tokens.ciphertext, sealed under a DEK whose wrapped
-- form (under the Vault transit KEK) is in deks.wrapped.
CREATE TABLE merchants (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    allowed_origins text NOT NULL DEFAULT '[]',
    created_at      text NOT NULL
);

CREATE TABLE api_keys (
    hash        blob PRIMARY KEY,
    prefix      text NOT NULL,
    merchant_id text NOT NULL REFERENCES merchants (id),
    kind        text NOT NULL CHECK (kind IN ('secret', 'publishable')),
    created_at  text NOT NULL
);
CREATE INDEX api_keys_merchant ON api_keys (merchant_id);

CREATE TABLE deks (
    id          text PRIMARY KEY,
    wrapped     text NOT NULL,
    kek_version integer NOT NULL,
    created_at  text NOT NULL
);

CREATE TABLE tokens (
    token       text PRIMARY KEY,
    merchant_id text NOT NULL REFERENCES merchants (id),
    dek_id      text NOT NULL REFERENCES deks (id),
    ciphertext  blob NOT NULL,
    brand       text NOT NULL,
    bin         text NOT NULL,
    last4       text NOT NULL,
    exp_month   integer NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year    integer NOT NULL,
    fingerprint text NOT NULL,
    created_at  text NOT NULL
);
CREATE INDEX tokens_merchant_fingerprint ON tokens (merchant_id, fingerprint, created_at);
CREATE INDEX tokens_dek ON tokens (dek_id);

CREATE TABLE idempotency_keys (
    merchant_id text NOT NULL,
    key         text NOT NULL,
    operation   text NOT NULL,
    request_mac blob NOT NULL,
    response    blob NOT NULL,
    created_at  text NOT NULL,
    PRIMARY KEY (merchant_id, key)
);
