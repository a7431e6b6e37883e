package vaultd_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/audit/verify"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/service"
	"github.com/obolpay/obol/vault/store"
)

// TestAuditTrail: reveals and deletes are recorded (who, token, merchant,
// purpose, host, key version; never a PAN), the chain is anchored in Vault,
// tampering in PostgreSQL is detected — even a rewrite with recomputed
// hashes — and no card is revealed when the record cannot be written.
func TestAuditTrail(t *testing.T) {
	s := newStack(t, stackOpts{})
	ctx := context.Background()
	tok := s.tokenize(s.a.SecretKey, cardIn("4242424242424242", 12, expYear, "123")).str("token")
	c, _, err := s.detokenize(s.gw, s.a.MerchantID, tok, true)
	require.NoError(t, err)
	c.Wipe()
	d := s.rest("DELETE", "/v1/tokens/"+tok, s.a.SecretKey, nil)
	require.EqualValuesf(t, 200, d.status, "delete: %d", d.status)
	evs, err := s.in.Store.ListAudit(ctx, store.AuditFilter{Token: tok})
	require.NoErrorf(t, err, "events for the token: %d, %v", len(evs), err)
	require.Lenf(t, evs, 2, "events for the token: %d, %v", len(evs), err)
	det, del := evs[0], evs[1]
	assert.Equal(t, audit.ActionDetokenize, det.Action)
	assert.Equal(t, "gateway:"+service.DefaultGatewayIdentity, det.Actor)
	assert.Equal(t, s.a.MerchantID, det.MerchantID)
	assert.Equal(t, "test", det.Purpose)
	assert.Equal(t, "acquirer.test", det.DestinationHost)
	assert.EqualValues(t, 1, det.KEKVersion)
	assert.Equal(t, "cvc_requested", det.Detail)
	require.EqualValuesf(t, audit.ActionDeleteToken, del.Action, "delete event: %+v", del)
	require.Truef(t, strings.HasPrefix(del.Actor, "merchant:"+s.a.MerchantID+"/sk_test_"), "delete event: %+v", del)

	anchorClient, err := transit.New(transit.Config{Address: s.vault.Addr, Token: s.vault.Token, AuditAnchorPath: s.cfg.Vault.AuditAnchorPath})
	require.NoError(t, err)
	var anchor transit.AuditAnchor
	head := del.Seq
	require.NoError(t, testenv.WaitFor(10*time.Second, func() error {
		anchor, err = anchorClient.ReadAuditAnchor(ctx)
		if err != nil || anchor.Seq < head {
			return fmt.Errorf("anchor at %d, head %d: %v", anchor.Seq, head, err)
		}
		return nil
	}))
	check := func() verify.Report {
		t.Helper()
		r, err := verify.Chain(ctx, s.in.Store, &anchor)
		require.NoError(t, err)
		return r
	}
	r := check()
	require.Emptyf(t, r.Problems, "clean trail: %+v", r)
	require.Truef(t, r.AnchorChecked, "clean trail: %+v", r)
	require.GreaterOrEqualf(t, r.Checked, int64(2), "clean trail: %+v", r)
	db, err := pgx.Connect(ctx, s.dbURL)
	require.NoError(t, err)
	defer db.Close(ctx)
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := db.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}

	t.Run("edited event", func(t *testing.T) {
		exec(`UPDATE audit_events SET destination_host = 'evil.example' WHERE seq = $1`, det.Seq)
		r := check()
		require.NotEmptyf(t, r.Problems, "edit not detected: %+v", r.Problems)
		require.EqualValuesf(t, det.Seq, r.Problems[0].Seq, "edit not detected: %+v", r.Problems)
		exec(`UPDATE audit_events SET destination_host = $2 WHERE seq = $1`, det.Seq, det.DestinationHost)
		r = check()
		require.Emptyf(t, r.Problems, "after restoring: %+v", r.Problems)
	})
	t.Run("deleted event", func(t *testing.T) {
		exec(`DELETE FROM audit_events WHERE seq = $1`, det.Seq)
		r := check()
		require.NotEmptyf(t, r.Problems, "deletion not detected")
		exec(`INSERT INTO audit_events (seq, at, actor, action, merchant_id, token, purpose, destination_host, kek_version, detail, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`, det.Seq, det.At, det.Actor, det.Action, det.MerchantID, det.Token, det.Purpose, det.DestinationHost, det.KEKVersion, det.Detail, det.PrevHash, det.Hash)
	})
	t.Run("history rewritten with recomputed hashes", func(t *testing.T) {
		// An attacker with database access hides the reveal's destination and
		// recomputes every later hash, so the chain is consistent in itself.
		all, _ := s.in.Store.ListAudit(ctx, store.AuditFilter{})
		for i := range all {
			if all[i].Seq == det.Seq {
				all[i].DestinationHost = "innocent.example"
			}
		}
		rewritten := append([]audit.Event(nil), all...)
		audit.Chain(0, nil, rewritten)
		for _, e := range rewritten {
			exec(`UPDATE audit_events SET destination_host = $2, prev_hash = $3, hash = $4 WHERE seq = $1`, e.Seq, e.DestinationHost, e.PrevHash, e.Hash)
		}
		r, err := verify.Chain(ctx, s.in.Store, nil)
		require.NoErrorf(t, err, "the rewrite should be self-consistent: %+v %v", r.Problems, err)
		require.Emptyf(t, r.Problems, "the rewrite should be self-consistent: %+v %v", r.Problems, err)
		r = check()
		require.Lenf(t, r.Problems, 1, "rewrite not detected by the anchor: %+v", r.Problems)
		require.Truef(t, strings.Contains(r.Problems[0].Reason, "anchored in Vault"), "rewrite not detected by the anchor: %+v", r.Problems)
		for _, e := range all {
			exec(`UPDATE audit_events SET destination_host = $2, prev_hash = $3, hash = $4 WHERE seq = $1`, e.Seq, map[bool]string{true: det.DestinationHost, false: e.DestinationHost}[e.Seq == det.Seq], e.PrevHash, e.Hash)
		}
	})
	t.Run("no reveal without a record", func(t *testing.T) {
		tok := s.tokenize(s.a.SecretKey, cardIn("5555555555554444", 12, expYear, "")).str("token")
		exec(`ALTER TABLE audit_events RENAME TO audit_events_gone`)
		_, _, err := s.detokenize(s.gw, s.a.MerchantID, tok, false)
		exec(`ALTER TABLE audit_events_gone RENAME TO audit_events`)
		require.EqualValuesf(t, codes.Unavailable, status.Code(err), "detokenize with the audit trail unwritable: %v; want UNAVAILABLE", err)
		c, _, err := s.detokenize(s.gw, s.a.MerchantID, tok, false)
		require.NoErrorf(t, err, "after the audit trail is back: %v", err)
		c.Wipe()
		r := check()
		require.Emptyf(t, r.Problems, "trail after recovery: %+v", r.Problems)
	})
}

// TestRevealRecordedOnce: a reveal reads its token in the transaction that
// appends its audit event (store.Revealer), or, when the token's data key
// is not in memory yet (a fresh process), reads it, opens it and then
// appends. Either way each reveal has exactly one event with the key
// version, and a deleted token or another merchant's is refused with no
// event.
func TestRevealRecordedOnce(t *testing.T) {
	s := newStack(t, stackOpts{})
	ctx := context.Background()
	tok := s.tokenize(s.a.SecretKey, cardIn("4242424242424242", 12, expYear, "123")).str("token")
	gone := s.tokenize(s.a.SecretKey, cardIn("5555555555554444", 12, expYear, "")).str("token")
	require.EqualValues(t, 200, s.rest("DELETE", "/v1/tokens/"+gone, s.a.SecretKey, nil).status)
	events := func(token string) []audit.Event {
		evs, err := s.in.Store.ListAudit(ctx, store.AuditFilter{Token: token})
		require.NoError(t, err)
		var out []audit.Event
		for _, e := range evs {
			if e.Action == audit.ActionDetokenize {
				out = append(out, e)
			}
		}
		return out
	}
	cases := []struct {
		name       string
		restart    bool // a fresh process: no data key in memory
		merchantID string
		token      string
		want       codes.Code
	}{
		{name: "data key in memory", merchantID: s.a.MerchantID, token: tok, want: codes.OK},
		{name: "another merchant's token", merchantID: s.b.MerchantID, token: tok, want: codes.NotFound},
		{name: "deleted token", merchantID: s.a.MerchantID, token: gone, want: codes.NotFound},
		{name: "data key not in memory", restart: true, merchantID: s.a.MerchantID, token: tok, want: codes.OK},
		{name: "again, data key in memory", merchantID: s.a.MerchantID, token: tok, want: codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.restart {
				s.stop()
				s.start()
				require.Zero(t, s.in.Envelope.CachedDEKs())
			}
			before := len(events(tc.token))
			c, resp, err := s.detokenize(s.gw, tc.merchantID, tc.token, false)
			require.Equalf(t, tc.want, status.Code(err), "detokenize: %v", err)
			evs := events(tc.token)
			if tc.want != codes.OK {
				assert.Len(t, evs, before, "no event for a refused reveal")
				return
			}
			c.Wipe()
			assert.Equal(t, tc.token, resp.GetToken())
			require.Len(t, evs, before+1, "one event per reveal")
			last := evs[len(evs)-1]
			assert.Equal(t, tc.merchantID, last.MerchantID)
			assert.EqualValues(t, 1, last.KEKVersion)
			assert.Equal(t, "gateway:"+service.DefaultGatewayIdentity, last.Actor)
		})
	}
	all, err := s.in.Store.ListAudit(ctx, store.AuditFilter{Limit: 10_000})
	require.NoError(t, err)
	var v audit.Verifier
	for _, e := range all {
		v.Add(e)
	}
	assert.Empty(t, v.Problems)
}
