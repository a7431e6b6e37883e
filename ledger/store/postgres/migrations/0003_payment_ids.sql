-- Version 3: the payments a transaction belongs to, by id, for the
-- reconciliation of the gateway's payments with the ledger (PaymentIDs and
-- the lookups by payment id).
CREATE INDEX transactions_payment_id ON transactions ((metadata->>'payment_id')) WHERE metadata->>'payment_id' IS NOT NULL;
