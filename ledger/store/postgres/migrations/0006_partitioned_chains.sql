-- Version 6: the journal's hash chain is partitioned into independent
-- chains, each with its own head, so that batches on different chains
-- commit concurrently (one head serialized every writer: one batch's
-- database work after the other, on one backend). A batch takes any free
-- chain head (FOR UPDATE SKIP LOCKED); every transaction names its chain
-- and links to the previous transaction of that chain. The existing chain
-- becomes chain 0 (its head and every transaction before this migration).
--
-- What the one head also gave is now explicit: balances and holds are
-- locked by the batch that reads them (accounts and pending transfers
-- FOR UPDATE, in id order), and seq comes from a sequence taken after
-- those locks, so that seq still orders each account's postings and each
-- chain's transactions in commit order. seq is unique and increasing, not
-- contiguous (a refused or replayed transfer leaves a gap); completeness
-- is each chain's links and its head.
CREATE TABLE journal_chains (
    chain integer PRIMARY KEY CHECK (chain >= 0 AND chain < 64),
    -- the seq and hash of the chain's last transaction (0 and the genesis
    -- hash for an empty chain)
    seq   bigint NOT NULL,
    hash  bytea NOT NULL
);
INSERT INTO journal_chains (chain, seq, hash) SELECT 0, seq, hash FROM journal_head WHERE id = 1;
INSERT INTO journal_chains (chain, seq, hash) SELECT c, 0, decode(repeat('00', 32), 'hex') FROM generate_series(1, 7) AS c;
-- A binary from before this version fails on the missing head (it would
-- otherwise fork chain 0), instead of writing.
DROP TABLE journal_head;

-- Every transaction so far is chain 0's (a constant default: no rewrite).
ALTER TABLE transactions ADD COLUMN chain integer NOT NULL DEFAULT 0 CHECK (chain >= 0 AND chain < 64);

CREATE SEQUENCE transactions_seq AS bigint OWNED BY transactions.seq;
SELECT setval('transactions_seq', greatest(coalesce(max(seq), 0), 1), max(seq) IS NOT NULL) FROM transactions;

-- A batch's compare-and-set: the rows it changed must be exactly the rows
-- it read (no batch on another chain changed one meanwhile), or the batch
-- fails (serialization_failure) and the writer runs it again.
CREATE FUNCTION ledger_expect_rows(got bigint, want bigint, what text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF got <> want THEN
        RAISE EXCEPTION '% of % % changed since the batch read them', want - got, want, what USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN got;
END $$;
