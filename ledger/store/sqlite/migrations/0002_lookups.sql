-- Version 2: lookups for the payments book (see the PostgreSQL migration).
-- The metadata keys the book searches by get expression indexes.
CREATE INDEX transactions_acquirer_reference ON transactions (json_extract(metadata, '$.acquirer_reference'));
CREATE INDEX transactions_payout ON transactions (json_extract(metadata, '$.payout_id'));
CREATE INDEX transactions_created ON transactions (created_at);
