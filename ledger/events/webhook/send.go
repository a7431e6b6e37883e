package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Limits of one delivery attempt.
const (
	DefaultTimeout = 10 * time.Second
	// MaxResponse is how much of an endpoint's answer is read (and then
	// dropped): a large or endless answer cannot hold a worker.
	MaxResponse = 64 << 10
)

// Message is one signed POST.
type Message struct {
	URL string
	// ID is the webhook-id: the event id, the same on every retry and
	// redelivery (receivers dedupe on it).
	ID        string
	Timestamp time.Time
	Body      []byte
	// Keys sign the message: the endpoint's secret key, and during a
	// rotation's overlap the previous one.
	Keys [][]byte
}

// Result is an attempt's outcome.
type Result struct {
	// Status is the HTTP status; 0 when there was no answer.
	Status  int
	Latency time.Duration
	// Err says why the attempt failed ("" on a 2xx). It never holds the
	// response body.
	Err string
	// Refused: the address was refused by the policy.
	Refused bool
}

// OK reports a 2xx answer.
func (r Result) OK() bool { return r.Err == "" }

// Sender posts signed messages under a Policy: bounded time and answer
// size, no redirects, no proxies from the environment.
type Sender struct {
	client *http.Client
	now    func() time.Time
}

// NewSender returns a sender; tlsConfig (nil: system roots) is for tests
// with their own CA.
func NewSender(p *Policy, timeout time.Duration, tlsConfig *tls.Config) *Sender {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dialer := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           p.DialContext(dialer),
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &Sender{
		client: &http.Client{
			Transport:     tr,
			Timeout:       timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		now: time.Now,
	}
}

// Close drops idle connections.
func (s *Sender) Close() { s.client.CloseIdleConnections() }

// Send posts m once. The timestamp header is m.Timestamp (the caller's
// clock); the latency is measured with the wall clock.
func (s *Sender) Send(ctx context.Context, m Message) Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL, bytes.NewReader(m.Body))
	if err != nil {
		return Result{Err: "invalid url"}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Obol-Webhooks/1")
	req.Header.Set("webhook-id", m.ID)
	req.Header.Set("webhook-timestamp", fmt.Sprint(m.Timestamp.Unix()))
	req.Header.Set("webhook-signature", SignatureHeader(m.Keys, m.ID, m.Timestamp, m.Body))
	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return Result{Latency: time.Since(start), Err: describe(err), Refused: errors.Is(err, ErrAddressRefused)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponse))
	resp.Body.Close()
	r := Result{Status: resp.StatusCode, Latency: time.Since(start)}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		r.Err = fmt.Sprintf("HTTP %d: redirects are not followed", resp.StatusCode)
	default:
		r.Err = fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return r
}

// describe turns a transport error into a short reason without the URL.
func describe(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, ErrAddressRefused):
		for e := err; e != nil; e = errors.Unwrap(e) {
			if errors.Unwrap(e) == ErrAddressRefused {
				return e.Error()
			}
		}
		return ErrAddressRefused.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return "connection failed: " + opErr.Err.Error()
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "host does not resolve"
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return "TLS certificate not trusted"
	}
	return "request failed"
}
