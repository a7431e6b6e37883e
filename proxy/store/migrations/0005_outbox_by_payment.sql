-- Gateway database, version 5 (one file for PostgreSQL and SQLite): the
-- ledger outbox by payment. Queuing a ledger event checks for an older
-- undelivered event of its payment (the transaction that queues it), and a
-- delivery asks again (OlderOutbox); without this index both scanned the
-- whole outbox, which grows while the ledger is unreachable: every payment
-- then read every waiting event.
CREATE INDEX ledger_outbox_payment ON ledger_outbox (payment_id, created_at, id);
