-- Vault database, version 1. No column ever holds a PAN or CVC in clear:
-- card data lives only in tokens.ciphertext, sealed under a DEK whose wrapped
-- form (under the Vault transit KEK) is in deks.wrapped.
CREATE TABLE merchants (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    allowed_origins text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL
);

CREATE TABLE api_keys (
    hash        bytea PRIMARY KEY,
    prefix      text NOT NULL,
    merchant_id text NOT NULL REFERENCES merchants (id),
    kind        text NOT NULL CHECK (kind IN ('secret', 'publishable')),
    created_at  timestamptz NOT NULL
);
CREATE INDEX api_keys_merchant ON api_keys (merchant_id);

CREATE TABLE deks (
    id          text PRIMARY KEY,
    wrapped     text NOT NULL,
    kek_version integer NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE tokens (
    token       text PRIMARY KEY,
    merchant_id text NOT NULL REFERENCES merchants (id),
    dek_id      text NOT NULL REFERENCES deks (id),
    ciphertext  bytea NOT NULL,
    brand       text NOT NULL,
    bin         text NOT NULL,
    last4       text NOT NULL,
    exp_month   smallint NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year    smallint NOT NULL,
    fingerprint text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX tokens_merchant_fingerprint ON tokens (merchant_id, fingerprint, created_at);
CREATE INDEX tokens_dek ON tokens (dek_id);

CREATE TABLE idempotency_keys (
    merchant_id text NOT NULL,
    key         text NOT NULL,
    operation   text NOT NULL,
    request_mac bytea NOT NULL,
    response    bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, key)
);
