package webhook

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSignKnownVector: the Standard Webhooks specification's example.
func TestSignKnownVector(t *testing.T) {
	key, err := SecretKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	assert.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
}

func TestVerify(t *testing.T) {
	secret, other := NewSecret(), NewSecret()
	k1, _ := SecretKey(secret)
	k2, _ := SecretKey(other)
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"evt_1"}`)
	both := SignatureHeader([][]byte{k2, k1}, "evt_1", now, body)
	cases := []struct {
		name, secret, ts, header string
		body                     []byte
		ok                       bool
	}{
		{"valid", secret, "1800000000", both, body, true},
		{"the previous secret during an overlap", other, "1800000000", both, body, true},
		{"tampered body", secret, "1800000000", both, []byte(`{"id":"evt_2"}`), false},
		{"wrong secret", NewSecret(), "1800000000", both, body, false},
		{"old timestamp", secret, "1799999000", SignatureHeader([][]byte{k1}, "evt_1", time.Unix(1799999000, 0), body), body, false},
		{"bad timestamp", secret, "soon", both, body, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Verify(c.secret, "evt_1", c.ts, c.header, c.body, now, 5*time.Minute)
			if c.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

func TestSealer(t *testing.T) {
	key := make([]byte, 32)
	s, err := NewSealer(key)
	require.NoError(t, err)
	sec := NewSecret()
	sealed := s.Seal("we_1", sec)
	assert.NotContains(t, sealed, strings.TrimPrefix(sec, SecretPrefix))
	got, err := s.Open("we_1", sealed)
	require.NoError(t, err)
	assert.Equal(t, sec, got)
	_, err = s.Open("we_2", sealed)
	assert.ErrorIs(t, err, ErrSealed, "bound to its endpoint")
	other, _ := NewSealer(append([]byte{1}, key[1:]...))
	_, err = other.Open("we_1", sealed)
	assert.ErrorIs(t, err, ErrSealed)
	_, err = NewSealer(key[:16])
	assert.Error(t, err)
}

type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	ips, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range ips {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

func TestCheckURL(t *testing.T) {
	res := fakeResolver{
		"example.com": {"93.184.215.14"}, "internal.example": {"10.0.0.7"}, "mixed.example": {"93.184.215.14", "192.168.1.1"},
		"metadata.example": {"169.254.169.254"}, "v6meta.example": {"fd00:ec2::254"}, "localhost": {"127.0.0.1", "::1"},
		"cgnat.example": {"100.64.1.1"}, "mapped.example": {"::ffff:127.0.0.1"}, "nat64.example": {"64:ff9b::a00:1"},
	}
	prod := &Policy{Resolver: res}
	dev := &Policy{Resolver: res, DevLoopback: true}
	allow := &Policy{Resolver: res, Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}
	cases := []struct {
		name string
		p    *Policy
		url  string
		code string // "" = accepted
	}{
		{"public https", prod, "https://example.com/hook", ""},
		{"public https with port", prod, "https://example.com:8443/hook?x=1", ""},
		{"plain http", prod, "http://example.com/hook", "url_insecure"},
		{"plain http to loopback in dev", dev, "http://localhost:3000/hook", ""},
		{"plain http to a public host in dev", dev, "http://example.com/hook", "url_insecure"},
		{"loopback", prod, "https://127.0.0.1/hook", "url_address_refused"},
		{"localhost", prod, "https://localhost/hook", "url_address_refused"},
		{"IPv6 loopback", prod, "https://[::1]/hook", "url_address_refused"},
		{"private", prod, "https://internal.example/hook", "url_address_refused"},
		{"private allowlisted", allow, "https://internal.example/hook", ""},
		{"one private address among public ones", prod, "https://mixed.example/hook", "url_address_refused"},
		{"metadata", prod, "https://metadata.example/latest", "url_address_refused"},
		{"metadata literal", prod, "https://169.254.169.254/latest", "url_address_refused"},
		{"IPv6 metadata", prod, "https://v6meta.example/", "url_address_refused"},
		{"CGNAT", prod, "https://cgnat.example/", "url_address_refused"},
		{"IPv4-mapped loopback", prod, "https://mapped.example/", "url_address_refused"},
		{"NAT64 of a private address", prod, "https://nat64.example/", "url_address_refused"},
		{"unspecified", prod, "https://0.0.0.0/", "url_address_refused"},
		{"multicast", prod, "https://224.0.0.1/", "url_address_refused"},
		{"link-local v6", prod, "https://[fe80::1]/", "url_address_refused"},
		{"public IPv6", prod, "https://[2606:4700:4700::1111]/", ""},
		{"NAT64 of a public address", prod, "https://[64:ff9b::808:808]/", ""},
		{"IPv4-compatible loopback", prod, "https://[::127.0.0.1]/", "url_address_refused"},
		{"IPv4-compatible private", prod, "https://[::a00:1]/", "url_address_refused"},
		{"IPv4-translated (SIIT) loopback", prod, "https://[::ffff:0:7f00:1]/", "url_address_refused"},
		{"IPv6 site-local", prod, "https://[fec0::1]/", "url_address_refused"},
		{"IPv6 discard-only", prod, "https://[100::1]/", "url_address_refused"},
		{"IPv6 unique local", prod, "https://[fd12:3456::1]/", "url_address_refused"},
		{"unresolvable", prod, "https://nowhere.example/", "url_unresolvable"},
		{"empty", prod, "", "field_required"},
		{"relative", prod, "/hook", "url_invalid"},
		{"ftp", prod, "ftp://example.com/", "url_invalid"},
		{"user info", prod, "https://user:pw@example.com/", "url_invalid"},
		{"fragment", prod, "https://example.com/#x", "url_invalid"},
		{"bad port", prod, "https://example.com:99999/", "url_invalid"},
		{"space", prod, "https://example.com/a b", "url_invalid"},
		{"too long", prod, "https://example.com/" + strings.Repeat("a", MaxURLLength), "url_invalid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.p.CheckURL(context.Background(), c.url)
			if c.code == "" {
				require.NoError(t, err)
				return
			}
			var ue *URLError
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, c.code, ue.Code)
		})
	}
}

// TestRefusalHidesResolvedAddress: a refused host name's error (shown to
// the merchant) names the kind of address, never the address itself: the
// operator's internal DNS must not be readable through endpoint creation.
func TestRefusalHidesResolvedAddress(t *testing.T) {
	p := &Policy{Resolver: fakeResolver{"db.internal.example": {"10.20.30.40"}, "meta.example": {"169.254.169.254"}}}
	for _, c := range []struct{ url, addr, kind string }{
		{"https://db.internal.example/", "10.20.30.40", "a private address"},
		{"https://meta.example/", "169.254.169.254", "a cloud metadata address"},
	} {
		_, err := p.CheckURL(context.Background(), c.url)
		var ue *URLError
		require.ErrorAs(t, err, &ue)
		assert.Equal(t, "url_address_refused", ue.Code)
		assert.Contains(t, ue.Message, c.kind)
		assert.NotContains(t, ue.Message, c.addr)
	}
}

func TestParseAllowCIDRs(t *testing.T) {
	got, err := ParseAllowCIDRs(" 10.1.0.0/16, fd00::/8 ,")
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00::/8")}, got)
	_, err = ParseAllowCIDRs("10.1.0.0/16,10.2.0.0")
	require.ErrorContains(t, err, "entry 2")
}

// FuzzCheckURL: no input panics, and an accepted URL is https (or http to
// loopback in dev) to a host whose every address the policy allows.
func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://example.com/hook", "http://localhost:3000/x", "https://[::1]:443/", "https://169.254.169.254/", "https://u@h/", "https://h:0/", "HTTPS://EXAMPLE.COM", "https://%zz/", "https://[fe80::1%25en0]/"} {
		f.Add(s)
	}
	res := fakeResolver{"example.com": {"93.184.215.14"}, "localhost": {"127.0.0.1"}, "h": {"10.0.0.1"}}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, p := range []*Policy{{Resolver: res}, {Resolver: res, DevLoopback: true}} {
			u, err := p.CheckURL(context.Background(), raw)
			if err != nil {
				var ue *URLError
				require.ErrorAs(t, err, &ue)
				if len(raw) > 12 {
					assert.NotContains(t, ue.Message, raw, "a refusal never echoes the URL")
				}
				continue
			}
			require.Contains(t, []string{"https", "http"}, u.Scheme)
			if u.Scheme == "http" {
				require.True(t, p.DevLoopback)
			}
			addrs, err := p.lookup(context.Background(), u.Hostname())
			require.NoError(t, err)
			for _, a := range addrs {
				require.NoError(t, p.CheckAddr(a))
			}
		}
	})
}

// rebinding resolves a host to a public address once (the check at
// creation), then to loopback (the delivery).
type rebinding struct{ n atomic.Int32 }

func (r *rebinding) LookupNetIP(_ context.Context, _, _ string) ([]netip.Addr, error) {
	if r.n.Add(1) == 1 {
		return []netip.Addr{netip.MustParseAddr("93.184.215.14")}, nil
	}
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

func TestSenderRefusesTheDialledAddress(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p := &Policy{Resolver: &rebinding{}}
	dev := &Policy{DevLoopback: true}
	p.DevLoopback = false
	_, err := p.CheckURL(context.Background(), "https://rebind.example:"+port+"/hook")
	require.NoError(t, err, "public at creation")
	s := NewSender(p, time.Second, nil)
	defer s.Close()
	r := s.Send(context.Background(), Message{URL: "http://rebind.example:" + port + "/hook", ID: "evt_1", Timestamp: time.Now(), Body: []byte(`{}`)})
	assert.True(t, r.Refused, r.Err)
	assert.Contains(t, r.Err, "loopback")
	assert.NotContains(t, r.Err, "127.0.0.1", "the attempt's error (shown to the merchant) does not say what the host resolved to")
	r = s.Send(context.Background(), Message{URL: srv.URL, ID: "evt_1", Timestamp: time.Now(), Body: []byte(`{}`)})
	assert.True(t, r.Refused, "a loopback literal is refused at dial time too")
	assert.Zero(t, hits.Load())
	ds := NewSender(dev, time.Second, nil)
	defer ds.Close()
	r = ds.Send(context.Background(), Message{URL: srv.URL, ID: "evt_1", Timestamp: time.Now(), Body: []byte(`{}`)})
	assert.True(t, r.OK(), r.Err)
	assert.Equal(t, int32(1), hits.Load())
}

func TestSenderBounds(t *testing.T) {
	block := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 1<<16))
		for range 1 << 10 { // 64 MiB, far past MaxResponse
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	var got http.Header
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(block) // before the server closes: it waits for /slow
	s := NewSender(&Policy{DevLoopback: true}, 300*time.Millisecond, nil)
	defer s.Close()
	key, _ := SecretKey(NewSecret())
	send := func(path string) Result {
		return s.Send(context.Background(), Message{URL: srv.URL + path, ID: "evt_1", Timestamp: time.Unix(1_800_000_000, 0), Body: []byte(`{"a":1}`), Keys: [][]byte{key}})
	}
	cases := []struct {
		name, path string
		status     int
		err        string
	}{
		{"a redirect is not followed", "/redirect", 302, "HTTP 302: redirects are not followed"},
		{"an error status fails", "/fail", 503, "HTTP 503"},
		{"a huge answer is read up to the bound", "/huge", 200, ""},
		{"a slow endpoint times out", "/slow", 0, "timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := send(c.path)
			assert.Equal(t, c.status, r.Status)
			assert.Equal(t, c.err, r.Err)
		})
	}
	r := send("/headers")
	require.True(t, r.OK())
	assert.Equal(t, "evt_1", got.Get("webhook-id"))
	assert.Equal(t, "1800000000", got.Get("webhook-timestamp"))
	assert.Equal(t, Sign(key, "evt_1", time.Unix(1_800_000_000, 0), []byte(`{"a":1}`)), got.Get("webhook-signature"))
}

// FuzzVerify: the webhook headers a receiver (obol listen) gets are
// untrusted; no input panics, and one only verifies with the secret's own
// signature over exactly that id, timestamp and body.
func FuzzVerify(f *testing.F) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, _ := SecretKey(secret)
	now := time.Unix(1_800_000_000, 0)
	f.Add("evt_1", "1800000000", Sign(key, "evt_1", now, []byte(`{}`)), []byte(`{}`))
	f.Add("", "", "", []byte(nil))
	f.Add("evt_1", "-1", "v1,AAAA v1,", []byte(`x`))
	f.Fuzz(func(t *testing.T, id, ts, header string, body []byte) {
		if Verify(secret, id, ts, header, body, now, 5*time.Minute) != nil {
			return
		}
		sec, err := strconv.ParseInt(ts, 10, 64)
		require.NoError(t, err)
		assert.Contains(t, strings.Fields(header), Sign(key, id, time.Unix(sec, 0), body))
	})
}
