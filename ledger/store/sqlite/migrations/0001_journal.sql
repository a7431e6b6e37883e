-- Ledger database (SQLite, embedded default), version 1. Same shape as the
-- PostgreSQL journal: the currency foreign key, the no-negative check and
-- immutable journal rows hold in the database; the per-transaction balance
-- check (a deferred trigger in PostgreSQL) is enforced in code here, since
-- SQLite cannot defer a check to commit. Times are RFC 3339 UTC text.
CREATE TABLE accounts (
    id              text PRIMARY KEY,
    currency        text NOT NULL,
    flags           integer NOT NULL DEFAULT 0,
    name            text NOT NULL DEFAULT '',
    posted          integer NOT NULL DEFAULT 0,
    pending_debits  integer NOT NULL DEFAULT 0 CHECK (pending_debits >= 0),
    pending_credits integer NOT NULL DEFAULT 0 CHECK (pending_credits >= 0),
    created_at      text NOT NULL,
    UNIQUE (id, currency),
    CHECK ((flags & 1) = 0 OR posted - pending_debits >= 0)
);

CREATE TABLE transactions (
    seq          integer PRIMARY KEY,
    id           text NOT NULL UNIQUE,
    kind         text NOT NULL DEFAULT '' CHECK (kind IN ('', 'pending', 'post_pending', 'void_pending')),
    pending_id   text NOT NULL DEFAULT '',
    expires_at   text,
    request_hash blob NOT NULL,
    description  text NOT NULL DEFAULT '',
    metadata     text NOT NULL DEFAULT '{}',
    prev_hash    blob NOT NULL,
    hash         blob NOT NULL,
    created_at   text NOT NULL
);

CREATE TABLE postings (
    seq        integer NOT NULL REFERENCES transactions (seq),
    idx        integer NOT NULL,
    account_id text NOT NULL,
    amount     integer NOT NULL CHECK (amount <> 0),
    currency   text NOT NULL,
    PRIMARY KEY (seq, idx),
    FOREIGN KEY (account_id, currency) REFERENCES accounts (id, currency)
);
CREATE INDEX postings_account ON postings (account_id, seq);

CREATE TABLE pending_transfers (
    id         text PRIMARY KEY REFERENCES transactions (id),
    debit      text NOT NULL REFERENCES accounts (id),
    credit     text NOT NULL REFERENCES accounts (id),
    amount     integer NOT NULL CHECK (amount > 0),
    currency   text NOT NULL,
    expires_at text,
    status     text NOT NULL CHECK (status IN ('pending', 'posted', 'voided'))
);

CREATE TABLE journal_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  integer NOT NULL,
    hash blob NOT NULL
);
INSERT INTO journal_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

CREATE TRIGGER postings_immutable_u BEFORE UPDATE ON postings BEGIN SELECT RAISE(ABORT, 'journal records are immutable'); END;
CREATE TRIGGER postings_immutable_d BEFORE DELETE ON postings BEGIN SELECT RAISE(ABORT, 'journal records are immutable'); END;
CREATE TRIGGER transactions_immutable_u BEFORE UPDATE ON transactions BEGIN SELECT RAISE(ABORT, 'journal records are immutable'); END;
CREATE TRIGGER transactions_immutable_d BEFORE DELETE ON transactions BEGIN SELECT RAISE(ABORT, 'journal records are immutable'); END;
