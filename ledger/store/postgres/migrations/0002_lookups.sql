-- Version 2: lookups for the payments book. Transactions are found by
-- metadata (acquirer reference, payout id) through a GIN index, and an
-- account's recent credits (funds still inside the payout delay) by time.
CREATE INDEX transactions_metadata ON transactions USING gin (metadata jsonb_path_ops);
CREATE INDEX transactions_created ON transactions (created_at);
