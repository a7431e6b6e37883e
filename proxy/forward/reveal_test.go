package forward

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/revealbox"
)

// sealingVault answers Detokenize as vaultd does (a revealbox.Sealer) and
// keeps the recipient keys it was sent.
type sealingVault struct {
	vaultv1.VaultServiceClient
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

// Reveals reuse the gateway's recipient key (one key agreement per
// lifetime on each side), and each answer opens only for its own token.
func TestRevealReusesRecipientKey(t *testing.T) {
	v := &sealingVault{sealer: revealbox.NewSealer(0, nil)}
	f := New(Config{Vault: v})
	route := &Route{Name: "acme"}
	for _, tok := range []string{"tok_a", "tok_b", "tok_a"} {
		c, e := f.reveal(context.Background(), "mer_1", tok, false, route, "api.acme.example")
		require.Nil(t, e)
		assert.Equal(t, "4242424242424242", string(c.Number))
		c.Wipe()
	}
	require.Len(t, v.keys, 3)
	assert.Equal(t, v.keys[0], v.keys[1])
	assert.Equal(t, v.keys[0], v.keys[2])
}
