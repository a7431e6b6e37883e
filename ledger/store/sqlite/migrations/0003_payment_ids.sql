-- Version 3: the payments a transaction belongs to (see the PostgreSQL
-- migration).
CREATE INDEX transactions_payment_id ON transactions (json_extract(metadata, '$.payment_id'));
