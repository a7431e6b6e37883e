package forward

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/revealbox"
)

// benchVault seals one card per call as vaultd does, keeping nothing.
type benchVault struct {
	vaultv1.VaultServiceClient
	sealer *revealbox.Sealer
}

func (v *benchVault) Detokenize(_ context.Context, req *vaultv1.DetokenizeRequest, _ ...grpc.CallOption) (*vaultv1.DetokenizeResponse, error) {
	pan, err := card.NewPANFromDigits([]byte("4242424242424242"))
	if err != nil {
		return nil, err
	}
	enc := card.Encode(card.Card{Number: pan, ExpMonth: 12, ExpYear: 2031})
	defer clear(enc)
	box, err := v.sealer.Seal(req.GetRecipientPublicKey(), enc, revealbox.DetokenizeAAD(req))
	return &vaultv1.DetokenizeResponse{Token: req.GetToken(), SealedCard: box, RequestBound: true}, err
}

// BenchmarkServeHTTP is the gateway's own work for one forward (one
// revealed JSON field, the answer scanned and relayed), vaultd replaced by
// an in-process sealer and the upstream a loopback TLS server: ns/op and
// allocs/op of the handler, the upstream's share included.
func BenchmarkServeHTTP(b *testing.B) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"ch_1","status":"succeeded","amount":1000}`)
	}))
	up.EnableHTTP2 = true
	up.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut short at the end
	up.StartTLS()
	b.Cleanup(up.Close)
	host := strings.TrimPrefix(up.URL, "https://")
	table, err := Parse([]byte(`routes:
  - name: load
    host: ` + host + `
    paths: ["/v1/charges"]
    methods: [POST]
    reveal:
      - json: card.number
        value: "{{token.number}}"
`))
	if err != nil {
		b.Fatal(err)
	}
	f := New(Config{Routes: Static(table), Vault: &benchVault{sealer: revealbox.NewSealer(0, nil)}, Logger: slog.New(slog.DiscardHandler),
		// As gatewayd configures it.
		Client:       &http.Client{Transport: &http.Transport{TLSClientConfig: up.Client().Transport.(*http.Transport).TLSClientConfig, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true}},
		Authenticate: func(context.Context, string) (string, error) { return "mer_1", nil }})
	dest := (&url.URL{Scheme: "https", Host: host, Path: "/v1/charges"}).String()
	body := `{"amount":1000,"currency":"USD","card":{"number":"tok_0123456789abcdef0123456789"}}`
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, "/v1/forward", strings.NewReader(body))
			r.Header.Set("Authorization", "Bearer sk_test")
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set(HeaderDestination, dest)
			w := httptest.NewRecorder()
			f.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Errorf("HTTP %d: %s", w.Code, w.Body)
				return
			}
		}
	})
}
