-- Ledger database, version 1: double-entry journal. The invariants hold in
-- the database as well as in code: postings balance per currency in every
-- transaction (deferred constraint trigger, checked at commit), a posting's
-- currency is its account's (composite foreign key), protected accounts never
-- go negative (check), and journal records are immutable (triggers).
CREATE TABLE accounts (
    id         text PRIMARY KEY,
    currency   text NOT NULL,
    flags      integer NOT NULL DEFAULT 0,
    name       text NOT NULL DEFAULT '',
    posted     bigint NOT NULL DEFAULT 0,
    -- held by pending (two-phase) transfers; available = posted - pending_debits
    pending_debits  bigint NOT NULL DEFAULT 0 CHECK (pending_debits >= 0),
    pending_credits bigint NOT NULL DEFAULT 0 CHECK (pending_credits >= 0),
    created_at timestamptz NOT NULL,
    UNIQUE (id, currency),
    CONSTRAINT no_negative_available CHECK (flags & 1 = 0 OR posted - pending_debits >= 0)
);

CREATE TABLE transactions (
    seq          bigint PRIMARY KEY,
    id           text NOT NULL UNIQUE,
    -- '' (posted), 'pending', 'post_pending' or 'void_pending'
    kind         text NOT NULL DEFAULT '' CHECK (kind IN ('', 'pending', 'post_pending', 'void_pending')),
    pending_id   text NOT NULL DEFAULT '',
    expires_at   timestamptz,
    -- idempotency: the client's request; the chain covers the stored content
    request_hash bytea NOT NULL,
    description  text NOT NULL DEFAULT '',
    metadata     jsonb NOT NULL DEFAULT '{}',
    prev_hash    bytea NOT NULL,
    hash         bytea NOT NULL,
    created_at   timestamptz NOT NULL
);

CREATE TABLE postings (
    seq        bigint NOT NULL REFERENCES transactions (seq),
    idx        integer NOT NULL,
    account_id text NOT NULL,
    amount     bigint NOT NULL CHECK (amount <> 0),
    currency   text NOT NULL,
    PRIMARY KEY (seq, idx),
    FOREIGN KEY (account_id, currency) REFERENCES accounts (id, currency)
);
CREATE INDEX postings_account ON postings (account_id, seq);

-- Pending (two-phase) transfers: the hold of a 'pending' transaction, until
-- a 'post_pending' or 'void_pending' transaction closes it.
CREATE TABLE pending_transfers (
    id         text PRIMARY KEY REFERENCES transactions (id),
    debit      text NOT NULL REFERENCES accounts (id),
    credit     text NOT NULL REFERENCES accounts (id),
    amount     bigint NOT NULL CHECK (amount > 0),
    currency   text NOT NULL,
    expires_at timestamptz,
    status     text NOT NULL CHECK (status IN ('pending', 'posted', 'voided'))
);
CREATE INDEX pending_transfers_open ON pending_transfers (expires_at) WHERE status = 'pending';

-- The head of the hash chain; appends lock it, so the chain has one order.
CREATE TABLE journal_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash bytea NOT NULL
);
INSERT INTO journal_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Checked at commit, once per transaction (one query): a zero sum in every
-- currency and at least two postings (holds and voids post nothing).
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    unbalanced boolean;
BEGIN
    SELECT coalesce(sum(c), 0), coalesce(bool_or(s <> 0), false) INTO n, unbalanced
      FROM (SELECT count(*) AS c, sum(amount) AS s FROM postings WHERE seq = NEW.seq GROUP BY currency) per_currency;
    IF NEW.kind IN ('pending', 'void_pending') THEN
        IF n <> 0 THEN
            RAISE EXCEPTION 'transaction % (%) must not post', NEW.seq, NEW.kind USING ERRCODE = 'check_violation';
        END IF;
    ELSIF n < 2 OR unbalanced THEN
        RAISE EXCEPTION 'transaction % does not balance (or has fewer than two postings)', NEW.seq USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER transactions_balanced AFTER INSERT ON transactions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journal records are immutable; post a reversing transaction' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON postings FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER transactions_immutable BEFORE UPDATE OR DELETE ON transactions FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
