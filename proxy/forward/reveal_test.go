package forward

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/obolpay/obol/internal/apierr"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/revealbox"
)

// sealingVault answers Detokenize as vaultd does (a revealbox.Sealer, the
// box bound to the request) and keeps the requests it was sent. answer, if
// set, replaces the answer: a hop between gateway and vaultd, or an older
// vaultd.
type sealingVault struct {
	vaultv1.VaultServiceClient
	sealer  *revealbox.Sealer
	reqs    []*vaultv1.DetokenizeRequest
	answers []*vaultv1.DetokenizeResponse
	answer  func(*vaultv1.DetokenizeResponse) *vaultv1.DetokenizeResponse
}

func (v *sealingVault) Detokenize(_ context.Context, req *vaultv1.DetokenizeRequest, _ ...grpc.CallOption) (*vaultv1.DetokenizeResponse, error) {
	v.reqs = append(v.reqs, req)
	pan, err := card.NewPANFromDigits([]byte("4242424242424242"))
	if err != nil {
		return nil, err
	}
	enc := card.Encode(card.Card{Number: pan, ExpMonth: 12, ExpYear: 2031})
	defer clear(enc)
	box, err := v.sealer.Seal(req.GetRecipientPublicKey(), enc, revealbox.DetokenizeAAD(req))
	resp := &vaultv1.DetokenizeResponse{Token: req.GetToken(), SealedCard: box, RequestBound: true}
	v.answers = append(v.answers, resp)
	if v.answer != nil {
		resp = v.answer(resp)
	}
	return resp, err
}

// Reveals reuse the gateway's recipient key (one key agreement per
// lifetime on each side), each with its own nonce.
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
	require.Len(t, v.reqs, 3)
	assert.Equal(t, v.reqs[0].GetRecipientPublicKey(), v.reqs[1].GetRecipientPublicKey())
	assert.Equal(t, v.reqs[0].GetRecipientPublicKey(), v.reqs[2].GetRecipientPublicKey())
	for i, r := range v.reqs {
		assert.Len(t, r.GetRequestNonce(), revealbox.NonceSize, "request %d", i)
	}
	assert.NotEqual(t, v.reqs[0].GetRequestNonce(), v.reqs[2].GetRequestNonce(), "a nonce per request")
}

// A box is opened only for the request it answers: not a box replayed from
// an earlier reveal of the same merchant and token under the same key, and
// not a box an older vaultd bound to merchant and token only. Each fails as
// vault_unavailable (nothing is forwarded) and the gateway logs "reveal
// refused".
func TestRevealRefusesAnotherRequestsBox(t *testing.T) {
	cases := []struct {
		name   string
		answer func(v *sealingVault, resp *vaultv1.DetokenizeResponse) *vaultv1.DetokenizeResponse
		code   string
		kind   apierr.Kind
	}{
		{"an earlier request's box", func(v *sealingVault, resp *vaultv1.DetokenizeResponse) *vaultv1.DetokenizeResponse {
			return v.answers[0]
		}, "vault_unavailable", apierr.KindUnavailable},
		{"an older vaultd's box", func(v *sealingVault, resp *vaultv1.DetokenizeResponse) *vaultv1.DetokenizeResponse {
			pan, err := card.NewPANFromDigits([]byte("4242424242424242"))
			require.NoError(t, err)
			enc := card.Encode(card.Card{Number: pan, ExpMonth: 12, ExpYear: 2031})
			box, err := v.sealer.Seal(v.reqs[1].GetRecipientPublicKey(), enc, revealbox.AAD("mer_1", "tok_a"))
			require.NoError(t, err)
			return &vaultv1.DetokenizeResponse{Token: "tok_a", SealedCard: box}
		}, "vault_unavailable", apierr.KindUnavailable},
		{"an unbound answer claiming to be bound", func(v *sealingVault, resp *vaultv1.DetokenizeResponse) *vaultv1.DetokenizeResponse {
			pan, err := card.NewPANFromDigits([]byte("4242424242424242"))
			require.NoError(t, err)
			enc := card.Encode(card.Card{Number: pan, ExpMonth: 12, ExpYear: 2031})
			box, err := v.sealer.Seal(v.reqs[1].GetRecipientPublicKey(), enc, revealbox.AAD("mer_1", "tok_a"))
			require.NoError(t, err)
			return &vaultv1.DetokenizeResponse{Token: "tok_a", SealedCard: box, RequestBound: true}
		}, "vault_unavailable", apierr.KindUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := &sealingVault{sealer: revealbox.NewSealer(0, nil)}
			var logs bytes.Buffer
			f := New(Config{Vault: v, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			route := &Route{Name: "acme"}
			first, e := f.reveal(context.Background(), "mer_1", "tok_a", false, route, "api.acme.example")
			require.Nil(t, e)
			first.Wipe()
			require.NotContains(t, logs.String(), "reveal refused")
			v.answer = func(resp *vaultv1.DetokenizeResponse) *vaultv1.DetokenizeResponse { return c.answer(v, resp) }
			got, e := f.reveal(context.Background(), "mer_1", "tok_a", false, route, "api.acme.example")
			require.NotNil(t, e)
			assert.Nil(t, got)
			assert.Equal(t, c.code, e.Code)
			assert.Equal(t, c.kind, e.Kind)
			assert.Equal(t, v.reqs[0].GetRecipientPublicKey(), v.reqs[1].GetRecipientPublicKey(), "the same recipient key")
			assert.Contains(t, logs.String(), "reveal refused")
			assert.NotContains(t, logs.String(), "4242424242424242")
		})
	}
}
