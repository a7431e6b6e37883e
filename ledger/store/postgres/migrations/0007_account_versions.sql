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
