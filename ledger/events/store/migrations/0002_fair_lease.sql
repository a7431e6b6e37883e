-- eventsd database, version 2: Lease counts the deliveries in flight (a
-- live lease) per endpoint and per merchant; finished deliveries have
-- lease_until 0, so this index holds the leased rows at its end. Manual
-- deliveries (test events, redeliveries) are marked, for their rate limit.
CREATE INDEX deliveries_leased ON deliveries (lease_until, endpoint_id, merchant_id);
ALTER TABLE deliveries ADD COLUMN manual INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_manual ON deliveries (endpoint_id, manual, created_at);
