package service

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/proxy/connector"
	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/revealbox"
)

// sealingVault answers Detokenize as vaultd does (a revealbox.Sealer) and
// keeps the recipient keys it was sent.
type sealingVault struct {
	merchantVault
	sealer *revealbox.Sealer
	keys   [][]byte
}

func (v *sealingVault) Detokenize(_ context.Context, req *vaultv1.DetokenizeRequest, _ ...grpc.CallOption) (*vaultv1.DetokenizeResponse, error) {
	v.keys = append(v.keys, req.GetRecipientPublicKey())
	pan, err := card.NewPANFromDigits([]byte("4242424242424242"))
	if err != nil {
		return nil, err
	}
	enc := card.Encode(card.Card{Number: pan, ExpMonth: 12, ExpYear: 2031})
	defer clear(enc)
	box, err := v.sealer.Seal(req.GetRecipientPublicKey(), enc, revealbox.AAD(req.GetMerchantId(), req.GetToken()))
	return &vaultv1.DetokenizeResponse{Token: req.GetToken(), SealedCard: box}, err
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
// payment), then a new one; every answer opens, each for its own token.
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
	require.Len(t, v.keys, len(steps))
	assert.Equal(t, v.keys[0], v.keys[1], "within the lifetime")
	assert.Equal(t, v.keys[0], v.keys[2], "within the lifetime")
	assert.NotEqual(t, v.keys[0], v.keys[3], "a new key after the lifetime")
	assert.Equal(t, []string{"4242", "4242", "4242", "4242"}, acq.last4, "every box opened")
}
