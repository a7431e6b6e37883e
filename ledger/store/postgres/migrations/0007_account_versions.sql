-- Version 7: an account's compare-and-set is on a version, not on its
-- balances. A batch reads an account without a lock and writes it only if
-- nobody changed it since; comparing the balances let a batch through
-- when others had changed the account and changed it back (+5 then −5 on
-- two other chains) meanwhile. Its postings then committed with a seq
-- below postings already visible, and a History cursor taken between the
-- two skipped them. The version moves on every write of the account, so
-- any change since the read fails the batch, which runs again locked.
-- (A constant default: no table rewrite.)
ALTER TABLE accounts ADD COLUMN version bigint NOT NULL DEFAULT 0;

-- Every write moves the version, including one that does not set it: a
-- binary from before this version (still running during a rolling
-- upgrade) updates balances by comparing them, and a new batch that read
-- the account before that write must still see it changed (otherwise it
-- writes its balances over the other's: a lost update).
CREATE FUNCTION accounts_bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.version = OLD.version THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_version BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION accounts_bump_version();
