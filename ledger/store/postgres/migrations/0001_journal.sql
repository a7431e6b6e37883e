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
    created_at timestamptz NOT NULL,
    UNIQUE (id, currency),
    CONSTRAINT no_negative_available CHECK (flags & 1 = 0 OR posted >= 0)
);

CREATE TABLE transactions (
    seq          bigint PRIMARY KEY,
    id           text NOT NULL UNIQUE,
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

-- The head of the hash chain; appends lock it, so the chain has one order.
CREATE TABLE journal_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    hash bytea NOT NULL
);
INSERT INTO journal_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Checked at commit, once per transaction (one query): at least two
-- postings, and a zero sum in every currency.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    unbalanced boolean;
BEGIN
    SELECT coalesce(sum(c), 0), coalesce(bool_or(s <> 0), false) INTO n, unbalanced
      FROM (SELECT count(*) AS c, sum(amount) AS s FROM postings WHERE seq = NEW.seq GROUP BY currency) per_currency;
    IF n < 2 OR unbalanced THEN
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
