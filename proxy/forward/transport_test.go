package forward

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkUpstreamTransport compares the gateway's upstream transport
// (HTTP/2 when the upstream offers it, as gatewayd configures it) with
// HTTP/1.1 keep-alive: a small POST and answer over loopback TLS, 32
// requests in flight, client and server in this process. Measure CPU per
// request with the process's user+sys time (README, Forwarding): HTTP/1.1
// was no cheaper (about 0.10 CPU-ms a request against 0.09) and, with two
// goroutine hand-offs a request, slower on a loaded machine.
func BenchmarkUpstreamTransport(b *testing.B) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"ch_1","status":"succeeded","amount":1000}`)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut short at the end
	srv.StartTLS()
	b.Cleanup(srv.Close)
	base := srv.Client().Transport.(*http.Transport).TLSClientConfig
	h1 := base.Clone()
	h1.NextProtos = []string{"http/1.1"}
	for _, tc := range []struct {
		name string
		tr   *http.Transport
	}{
		{"http2", &http.Transport{TLSClientConfig: base.Clone(), MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true}},
		{"http1.1", &http.Transport{TLSClientConfig: h1, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			client := &http.Client{Transport: tc.tr}
			body := []byte(`{"amount":1000,"currency":"USD","card":{"number":"4242424242424242"}}`)
			b.ReportAllocs()
			b.SetParallelism(16) // × GOMAXPROCS (2 here): 32 in flight
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/charges", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			})
		})
	}
}
