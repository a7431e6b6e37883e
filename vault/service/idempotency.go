package service

import (
	"context"
	"crypto/hmac"
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/idemkey"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/store"
)

// idempotencyKey parses the Idempotency-Key (internal/idemkey) and returns
// the form stored for this principal; "" when none was sent. The form is a
// hash scoped by the key type, so a publishable key's records and the
// secret key's never meet: a publishable key cannot claim, replay or probe
// (through a conflict) a key the merchant's backend uses.
func idempotencyKey(ctx context.Context, p principal) (string, error) {
	k, err := idemkey.FromContext(ctx)
	if err != nil {
		return "", err
	}
	return k.Storage(p.idemScope()), nil
}

// requestMACs are per-merchant keyed MACs of the operation and the
// deterministic encoding of the request: the first under the latest secret
// version (stored), then under the previous one (accepted on replay). The
// encoding may hold a PAN: it is wiped once MACed.
func (s *Service) requestMACs(ctx context.Context, merchantID, op string, req proto.Message) ([][]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	return s.env.RequestMACs(ctx, merchantID, []byte(op), b)
}

func matchesAny(mac []byte, macs [][]byte) bool {
	for _, m := range macs {
		if hmac.Equal(mac, m) {
			return true
		}
	}
	return false
}

// replay looks up a recorded result. found is false when the key is new.
// A key reused for a different operation or request is a conflict.
func (s *Service) replay(ctx context.Context, merchantID, key, op string, macs [][]byte, out proto.Message) (found bool, err error) {
	rec, err := s.store.GetIdempotency(ctx, merchantID, key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if rec.Operation != op || !matchesAny(rec.RequestMAC, macs) {
		return true, apierr.ErrIdempotencyKeyReused
	}
	if err := proto.Unmarshal(rec.Response, out); err != nil {
		return true, err
	}
	return true, nil
}

// record writes an audit event (see vault/audit).
func (s *Service) record(ctx context.Context, e audit.Event) error {
	if e.At.IsZero() {
		e.At = s.cfg.Now()
	}
	_, err := s.store.AppendAudit(ctx, []audit.Event{e})
	return err
}

// record stores a result for later replays. If a concurrent request with the
// same key won the race, its result is returned instead (or a conflict).
func (s *Service) remember(ctx context.Context, merchantID, key, op string, macs [][]byte, resp proto.Message) error {
	b, err := proto.Marshal(resp)
	if err != nil {
		return err
	}
	err = s.store.PutIdempotency(ctx, store.IdempotencyRecord{MerchantID: merchantID, Key: key, Operation: op, RequestMAC: macs[0], Response: b, CreatedAt: s.cfg.Now().UTC()})
	if errors.Is(err, store.ErrIdempotencyExists) {
		if _, rerr := s.replay(ctx, merchantID, key, op, macs, resp); rerr != nil {
			return rerr
		}
		return nil
	}
	return err
}

// beginIdempotent prepares an idempotent write. With no key it does nothing.
// With a key it returns the request MAC and, when the key already holds a
// result, fills resp with it and reports replayed (or a conflict error).
func (s *Service) beginIdempotent(ctx context.Context, merchantID, key, op string, req, resp proto.Message) (macs [][]byte, replayed bool, err error) {
	if key == "" {
		return nil, false, nil
	}
	if macs, err = s.requestMACs(ctx, merchantID, op, req); err != nil {
		return nil, false, s.public(ctx, op, err)
	}
	found, err := s.replay(ctx, merchantID, key, op, macs, resp)
	if err != nil {
		return nil, false, s.public(ctx, op, err)
	}
	return macs, found, nil
}
