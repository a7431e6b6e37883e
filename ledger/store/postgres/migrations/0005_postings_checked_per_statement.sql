-- Version 5: a posting's references are checked once per statement,
-- set-based, instead of by two foreign keys. Each foreign key ran a lookup
-- and took (and WAL-logged) a row lock per posting: 4 lookups and about 3
-- lock records per transfer, the largest share of a batch's database work.
-- The invariants are the same: every posting names an existing transaction
-- and an existing account in the posting's currency. What the foreign keys
-- also gave, that a referenced row cannot go away, the journal already has
-- for transactions (immutable) and now has for accounts: an account is
-- never deleted, truncated, renamed or moved to another currency (its
-- balance changes; its identity does not).
ALTER TABLE postings DROP CONSTRAINT postings_seq_fkey, DROP CONSTRAINT postings_account_id_currency_fkey;

-- Planned with index lookups only, whatever the statistics say (a batch
-- names a few rows of large tables; see the store's sqlPlanKeyed).
CREATE FUNCTION ledger_postings_refs() RETURNS trigger LANGUAGE plpgsql
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    s bigint;
    a text;
BEGIN
    SELECT n.seq INTO s FROM new_postings n WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.seq = n.seq) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'posting of transaction %: no such transaction', s USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT n.account_id INTO a FROM new_postings n WHERE NOT EXISTS (SELECT 1 FROM accounts x WHERE x.id = n.account_id AND x.currency = n.currency) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'posting to account %: no such account in the posting''s currency', a USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER postings_refs AFTER INSERT ON postings REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_postings_refs();

CREATE FUNCTION ledger_accounts_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'accounts are never deleted, renamed or moved to another currency' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER accounts_kept BEFORE DELETE OR UPDATE OF id, currency ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_accounts_kept();
CREATE TRIGGER accounts_kept_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_accounts_kept();
-- Nor is the journal truncated (before, TRUNCATE transactions CASCADE took
-- the postings along through their foreign key; now it would leave them).
CREATE TRIGGER transactions_immutable_truncate BEFORE TRUNCATE ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable();
CREATE TRIGGER postings_immutable_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_immutable();
