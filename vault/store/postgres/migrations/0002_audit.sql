-- Audit trail, version 2: every reveal, delete, key event and admin action,
-- hash-chained (hash = SHA-256 over prev_hash and the event's fields; see
-- vault/audit). Never a PAN: tokens, merchants, purposes, hosts, versions.
CREATE TABLE audit_events (
    seq              bigint PRIMARY KEY,
    at               timestamptz NOT NULL,
    actor            text NOT NULL,
    action           text NOT NULL,
    merchant_id      text NOT NULL DEFAULT '',
    token            text NOT NULL DEFAULT '',
    purpose          text NOT NULL DEFAULT '',
    destination_host text NOT NULL DEFAULT '',
    kek_version      integer NOT NULL DEFAULT 0,
    detail           text NOT NULL DEFAULT '',
    prev_hash        bytea NOT NULL,
    hash             bytea NOT NULL
);
CREATE INDEX audit_events_merchant ON audit_events (merchant_id, seq);
CREATE INDEX audit_events_token ON audit_events (token) WHERE token <> '';
