package service

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/obolpay/obol/internal/apierr"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/proxy/connector"
	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/revealbox"
)

// sealingVault answers Detokenize as vaultd does (a revealbox.Sealer, the
// box bound to the request) and keeps the requests and answers. replay, if
// set, answers with the first answer instead: a hop between gateway and
// vaultd handing one payment's sealed card to another.
type sealingVault struct {
	merchantVault
	sealer  *revealbox.Sealer
	reqs    []*vaultv1.DetokenizeRequest
	answers []*vaultv1.DetokenizeResponse
	replay  bool
}

func (v *sealingVault) Detokenize(_ context.Context, req *vaultv1.DetokenizeRequest, _ ...grpc.CallOption) (*vaultv1.DetokenizeResponse, error) {
	v.reqs = append(v.reqs, req)
	pan, err := card.NewPANFromDigits([]byte("4242424242424242"))
	if err != nil {
		return nil, err
	}
	enc := card.Encode(card.Card{Number: pan, ExpMonth: 12, ExpYear: 2031, CVC: card.NewCVCFromDigits([]byte("123"))})
	defer clear(enc)
	box, err := v.sealer.Seal(req.GetRecipientPublicKey(), enc, revealbox.DetokenizeAAD(req))
	resp := &vaultv1.DetokenizeResponse{Token: req.GetToken(), SealedCard: box, CvcIncluded: true, RequestBound: true}
	v.answers = append(v.answers, resp)
	if v.replay {
		return v.answers[0], err
	}
	return resp, err
}

// cardAcquirer approves every authorization and keeps the last four
// digits of each card it was sent.
type cardAcquirer struct {
	connector.Connector
	last4 []string
}

func (*cardAcquirer) Name() string { return "simulator" }
func (*cardAcquirer) Host() string { return "acquirer.example" }
func (a *cardAcquirer) Authorize(_ context.Context, r connector.AuthRequest) (connector.AuthResult, error) {
	a.last4 = append(a.last4, r.Card.Number.Last4())
	return connector.AuthResult{Approved: true, Reference: "ref_1"}, nil
}

// TestAuthorizeReusesRecipientKey: the reveals of a gateway's
// authorizations carry one recipient key for revealbox.DefaultLifetime (one
// key agreement per lifetime on each side, not three X25519 operations per
// payment), then a new one, and a nonce each; every answer opens.
func TestAuthorizeReusesRecipientKey(t *testing.T) {
	clk := newClock()
	v := &sealingVault{sealer: revealbox.NewSealer(0, clk.Now)}
	acq := &cardAcquirer{}
	s := New(Config{Vault: v, Connectors: map[string]connector.Connector{"simulator": acq}, Now: clk.Now, NewTicker: never})
	steps := []struct {
		name    string
		token   string
		advance time.Duration // before the call
	}{
		{"first", "tok_a", 0},
		{"within the lifetime", "tok_b", revealbox.DefaultLifetime / 2},
		{"the same token again", "tok_a", 0},
		{"after the lifetime", "tok_c", revealbox.DefaultLifetime},
	}
	for _, st := range steps {
		clk.Advance(st.advance)
		p := &Payment{ID: "pay_" + st.token, MerchantID: "mer_1", Token: st.token, Amount: 100, Currency: "USD"}
		out, err := s.authorize(context.Background(), acq, p, false)
		require.NoError(t, err, st.name)
		assert.True(t, out.auth.Approved, st.name)
	}
	require.Len(t, v.reqs, len(steps))
	key := func(i int) []byte { return v.reqs[i].GetRecipientPublicKey() }
	assert.Equal(t, key(0), key(1), "within the lifetime")
	assert.Equal(t, key(0), key(2), "within the lifetime")
	assert.NotEqual(t, key(0), key(3), "a new key after the lifetime")
	nonces := map[string]bool{}
	for _, r := range v.reqs {
		require.Len(t, r.GetRequestNonce(), revealbox.NonceSize)
		nonces[string(r.GetRequestNonce())] = true
	}
	assert.Len(t, nonces, len(steps), "a nonce per reveal")
	assert.Equal(t, []string{"4242", "4242", "4242", "4242"}, acq.last4, "every box opened")
}

// TestAuthorizeRefusesAnotherPaymentsBox: within the recipient key's
// lifetime, a box vaultd sealed for an earlier reveal of the same merchant
// and token, handed back as the answer to this one, does not open: not
// another payment's (its purpose differs too), and not this payment's own
// earlier reveal (a retry: the same purpose and host, so only the nonce
// tells the two apart). The payment fails as vault_unavailable, the gateway
// logs "reveal refused", and nothing reaches the acquirer.
func TestAuthorizeRefusesAnotherPaymentsBox(t *testing.T) {
	cases := []struct {
		name   string
		second string // the payment whose reveal gets the first box
	}{
		{"another payment's box", "pay_b"},
		{"the same payment's earlier box (a retry)", "pay_a"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := newClock()
			v := &sealingVault{sealer: revealbox.NewSealer(0, clk.Now)}
			acq := &cardAcquirer{}
			var logs bytes.Buffer
			s := New(Config{Vault: v, Connectors: map[string]connector.Connector{"simulator": acq}, Now: clk.Now, NewTicker: never,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			a := &Payment{ID: "pay_a", MerchantID: "mer_1", Token: "tok_a", Amount: 100, Currency: "USD"}
			_, err := s.authorize(context.Background(), acq, a, false)
			require.NoError(t, err)
			require.NotContains(t, logs.String(), "reveal refused")
			v.replay = true
			b := &Payment{ID: c.second, MerchantID: "mer_1", Token: "tok_a", Amount: 100, Currency: "USD"}
			_, err = s.authorize(context.Background(), acq, b, false)
			require.ErrorIs(t, err, errVaultUnavailable)
			assert.Contains(t, apierr.From(err).Message, "CVC", "the answer says the reveal used up a CVC")
			require.Len(t, v.reqs, 2)
			assert.Equal(t, v.reqs[0].GetRecipientPublicKey(), v.reqs[1].GetRecipientPublicKey(), "the same recipient key")
			assert.Equal(t, []string{"4242"}, acq.last4, "only the first reveal reached the acquirer")
			assert.Contains(t, logs.String(), "reveal refused")
			assert.Contains(t, logs.String(), "payment="+c.second)
			assert.NotContains(t, logs.String(), "4242424242424242")
		})
	}
}
