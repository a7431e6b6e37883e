package gatewayd_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// TestAmbiguousAuthorizations: an authorization whose outcome the gateway
// cannot know is reversed, never taken for "nothing charged": the
// merchant hangs up while the acquirer works on the card, or the acquirer
// authorizes and then answers 5xx. Afterwards the acquirer holds no live
// authorization for the payment and the ledger holds nothing.
func TestAmbiguousAuthorizations(t *testing.T) {
	s := start(t)
	cases := []struct {
		name, pan string
		run       func(t *testing.T, body, key string)
	}{
		{"merchant hangs up mid-call", "4000000000000036", func(t *testing.T, body, key string) {
			calls := s.sim.Requests("authorize")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				// Hang up once the card is at the acquirer.
				_ = testenv.WaitFor(10*time.Second, func() error {
					if s.sim.Requests("authorize") == calls {
						return errors.New("not yet at the acquirer")
					}
					return nil
				})
				cancel()
			}()
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+s.gw+"/v1/payments", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+s.sk)
			req.Header.Set("Idempotency-Key", key)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			require.ErrorIs(t, err, context.Canceled)
		}},
		{"acquirer authorizes then answers 5xx", "4242424242424242", func(t *testing.T, body, key string) {
			s.sim.FailAfterAuthorize(true)
			defer s.sim.FailAfterAuthorize(false)
			st, p := s.pay(t, body, key)
			require.Equal(t, 200, st, "%v", p)
			assert.Equal(t, "acquirer_unavailable", p["decline_code"])
		}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			tok := s.tokenize(t, tt.pan, "123")
			body := `{"token":"` + tok + `","amount":1000,"currency":"USD","capture":true}`
			key := "ambiguous-" + randHex(t)
			rev := s.sim.Requests("reversal")
			tt.run(t, body, key)
			// The retry answers the payment once the first request is done.
			var p map[string]any
			require.NoError(t, testenv.WaitFor(15*time.Second, func() error {
				var st int
				if st, p = s.pay(t, body, key); st != 200 {
					return errors.New(errCode(p))
				}
				return nil
			}))
			assert.Equal(t, "failed", p["status"])
			assert.Equal(t, int64(1), s.sim.Requests("reversal")-rev, "the authorization is reversed")
			acq, _ := p["acquirer"].(map[string]any)
			if ref, _ := acq["reference"].(string); ref != "" {
				a, ok := s.sim.Authorization(ref)
				require.True(t, ok)
				assert.NotEqual(t, "approved", a.Status)
			}
			for _, a := range s.sim.AuthorizationsFor(p["id"].(string)) {
				assert.NotEqual(t, "approved", a.Status, "a live authorization is left at the acquirer")
			}
			require.NoError(t, testenv.WaitFor(15*time.Second, func() error {
				b, err := s.ledger.GetMerchantBalances(s.ledgerCtx, &ledgerv1.GetMerchantBalancesRequest{MerchantId: s.merchantID, Currency: "USD"})
				if err != nil || b.Held != 0 || b.Pending != 0 {
					return errors.New("the ledger still holds money")
				}
				return nil
			}))
		})
	}
}
