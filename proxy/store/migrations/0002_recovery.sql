-- Gateway database, version 2: crash recovery. A payment is stored as
-- 'processing' before its ledger hold and acquirer call; the sweeper finds
-- those left behind. Ledger events the ledger could not take after the
-- acquirer acted wait in ledger_outbox (the RecordPayment request as
-- protobuf JSON: PAN-free) until the sweeper delivers them.
CREATE INDEX payments_processing ON payments (updated_at) WHERE status = 'processing';
CREATE TABLE ledger_outbox (
    id         TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL,
    request    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0
);
