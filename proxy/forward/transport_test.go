package forward

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUpstreamTransport: upstream requests speak HTTP/1.1 even to an
// upstream that offers HTTP/2, reuse their connection, resume the TLS
// session on a new one, ignore proxy settings, and leave the caller's TLS
// config as it was.
func TestUpstreamTransport(t *testing.T) {
	var (
		mu     sync.Mutex
		protos []string
		peers  = map[string]bool{}
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, r.Proto)
		peers[r.RemoteAddr] = true
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1") // would fail every request if used

	base := srv.Client().Transport.(*http.Transport).TLSClientConfig
	require.Contains(t, srv.TLS.NextProtos, "h2", "the upstream offers HTTP/2")
	before := base.Clone()
	tr := UpstreamTransport(base)
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	post := func() *http.Response {
		t.Helper()
		resp, err := client.Post(srv.URL+"/v1/charges", "application/json", strings.NewReader(`{"amount":1}`))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
		return resp
	}
	first := post()
	second := post()
	assert.Equal(t, 1, first.ProtoMajor)
	assert.Equal(t, 1, second.ProtoMajor)
	assert.False(t, first.TLS.DidResume)
	tr.CloseIdleConnections()
	third := post()
	assert.True(t, third.TLS.DidResume, "a new connection resumes the TLS session")

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"HTTP/1.1", "HTTP/1.1", "HTTP/1.1"}, protos)
	assert.Len(t, peers, 2, "the first two requests share one kept-alive connection")
	assert.Equal(t, before.NextProtos, base.NextProtos, "the caller's config is not changed")
	assert.Nil(t, base.ClientSessionCache)
	assert.Nil(t, tr.Proxy, "no proxy from the environment")
}
