-- Version 4: disputes and the ledger's event outbox. A dispute is one
-- mutable row per chargeback (its money moves in the journal, which stays
-- immutable); every change is a compare-and-set on version, written in
-- the same transaction as the events it produces (the outbox a relay
-- delivers to eventsd, idempotent by event id).
CREATE TABLE disputes (
    id                 text PRIMARY KEY,
    payment_id         text NOT NULL,
    merchant_id        text NOT NULL,
    acquirer           text NOT NULL,
    acquirer_reference text NOT NULL,
    amount             bigint NOT NULL CHECK (amount > 0),
    fee                bigint NOT NULL CHECK (fee >= 0),
    currency           text NOT NULL,
    reason             text NOT NULL,
    status             text NOT NULL CHECK (status IN ('needs_response', 'under_review', 'won', 'lost')),
    version            bigint NOT NULL CHECK (version >= 1),
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX disputes_merchant ON disputes (merchant_id, created_at, id);
CREATE INDEX disputes_payment ON disputes (payment_id);

-- A closed dispute stays closed, and a status never goes back.
CREATE FUNCTION disputes_forward() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rank_old int := CASE OLD.status WHEN 'needs_response' THEN 1 WHEN 'under_review' THEN 2 ELSE 3 END;
    rank_new int := CASE NEW.status WHEN 'needs_response' THEN 1 WHEN 'under_review' THEN 2 ELSE 3 END;
BEGIN
    IF NEW.version <> OLD.version + 1 OR rank_new <= rank_old AND NEW.status <> OLD.status OR rank_old = 3 AND NEW.status <> OLD.status THEN
        RAISE EXCEPTION 'dispute % may not go from % (version %) to % (version %)', OLD.id, OLD.status, OLD.version, NEW.status, NEW.version;
    END IF;
    IF NEW.id <> OLD.id OR NEW.payment_id <> OLD.payment_id OR NEW.merchant_id <> OLD.merchant_id OR NEW.amount <> OLD.amount OR NEW.currency <> OLD.currency THEN
        RAISE EXCEPTION 'dispute %: only its status changes', OLD.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER disputes_forward BEFORE UPDATE ON disputes FOR EACH ROW EXECUTE FUNCTION disputes_forward();

CREATE TABLE event_outbox (
    seq             bigserial PRIMARY KEY,
    id              text NOT NULL UNIQUE,
    type            text NOT NULL,
    merchant_id     text NOT NULL,
    object_type     text NOT NULL,
    object_id       text NOT NULL,
    object_version  bigint NOT NULL,
    data            text NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    last_error      text NOT NULL DEFAULT ''
);
CREATE INDEX event_outbox_due ON event_outbox (status, next_attempt_at, seq);
