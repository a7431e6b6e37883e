package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/httpapi"
	"github.com/obolpay/obol/internal/telemetry"
	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
	"github.com/obolpay/obol/proxy/panscan"
	"github.com/obolpay/obol/vault/card"
	"github.com/obolpay/obol/vault/revealbox"
)

// Headers of the forward API.
const (
	HeaderDestination   = "Obol-Destination"
	HeaderDryRun        = "Obol-Dry-Run"
	HeaderUpstreamAuthz = "Obol-Upstream-Authorization"
	HeaderRoute         = "Obol-Route"
	HeaderRedacted      = "Obol-Redacted"
)

// Config wires the forwarder.
type Config struct {
	Routes *Routes
	// Vault is vaultd over mTLS with the gateway identity.
	Vault vaultv1.VaultServiceClient
	// Authenticate checks the merchant's Authorization header.
	Authenticate func(ctx context.Context, authorization string) (string, error)
	// Client sends upstream requests (its TLS roots decide which upstream
	// certificates are trusted); Timeout bounds each (default 20 s, under the server's write timeout).
	Client  *http.Client
	Timeout time.Duration
	// CallTimeout bounds each vaultd call (default 5 s).
	CallTimeout time.Duration
	// MaxResponse caps an upstream answer, on the wire and decoded
	// (default 1 MiB); MaxRatio caps how much a compressed answer may
	// expand once decoded past 64 KiB (default 100).
	MaxResponse int64
	MaxRatio    int64
	Logger      *slog.Logger
}

// Forwarder serves POST /v1/forward.
type Forwarder struct {
	cfg Config
	// Requests counts forward requests by route ("" when none matched)
	// and outcome: forwarded, dry_run, refused, destination_invalid (a
	// malformed Obol-Destination), unavailable (vaultd), upstream_error
	// (unreachable, timeout) and answer_refused (an answer the gateway
	// would not relay: unscannable encoding, too large, partial). Redacted
	// counts card numbers and CVCs masked in upstream answers. Labels come
	// from the route file only (never from a request).
	Requests *prometheus.CounterVec
	Redacted prometheus.Counter
	// keys is the recipient key sent to vaultd, renewed every
	// revealbox.DefaultLifetime (one key agreement per lifetime, not four per reveal).
	keys *revealbox.Keyring
}

// New returns the forwarder.
func New(cfg Config) *Forwarder {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 5 * time.Second
	}
	if cfg.MaxResponse <= 0 {
		cfg.MaxResponse = 1 << 20
	}
	if cfg.MaxRatio <= 0 {
		cfg.MaxRatio = 100
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: telemetry.Transport("forward", &http.Transport{MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: true})}
	}
	// Never follow redirects: a redirect would take card data to a host
	// no route allows.
	c := *cfg.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.Client = &c
	return &Forwarder{cfg: cfg, keys: revealbox.NewKeyring(revealbox.DefaultLifetime, nil),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "obol_gateway_forward_requests_total", Help: "POST /v1/forward requests by route and outcome."}, []string{"route", "outcome"}),
		Redacted: prometheus.NewCounter(prometheus.CounterOpts{Name: "obol_gateway_forward_redacted_total", Help: "Card numbers and CVCs masked in upstream answers."}),
	}
}

type located struct {
	span
	header bool
}

// find locates every reveal's token in the request.
func find(route *Route, r *http.Request, body []byte) ([]located, *apierr.Error) {
	var out []located
	for i := range route.Reveal {
		rv := &route.Reveal[i]
		var l located
		l.reveal = rv
		var err error
		switch {
		case rv.JSON != "":
			l.start, l.end, l.token, err = jsonSpan(body, rv.JSON)
		case rv.Form != "":
			l.start, l.end, l.token, err = formSpan(body, rv.Form)
		default:
			l.header = true
			vs := r.Header.Values(rv.Header)
			switch {
			case len(vs) == 0:
				err = errMissing
			case len(vs) > 1:
				err = errDuplicate
			case !isToken(vs[0]):
				err = errNotToken
			default:
				l.token = vs[0]
			}
		}
		switch {
		case errors.Is(err, errMissing):
			return nil, apierr.Invalid("reveal_field_missing", rv.Location(), "the route reveals a card at "+rv.Location()+" but the request has no token there")
		case errors.Is(err, errDuplicate):
			return nil, apierr.Invalid("reveal_field_ambiguous", rv.Location(), rv.Location()+" appears more than once in the request")
		case errors.Is(err, errNotToken):
			return nil, apierr.Invalid("reveal_field_not_token", rv.Location(), "the value at "+rv.Location()+" must be a token (tok_…) written plainly")
		case err != nil:
			return nil, apierr.Invalid("body_invalid", "body", err.Error())
		}
		out = append(out, l)
	}
	return out, nil
}

func (f *Forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o := &outcome{}
	e := f.serve(w, r, o)
	if e != nil {
		httpapi.WriteError(w, e)
		switch {
		case answerRefusals[e.Code]:
			o.name = "answer_refused"
		case e.Code == codeDestinationInvalid:
			o.name = "destination_invalid"
		case e.Kind == apierr.KindBadGateway, e.Kind == apierr.KindGatewayTimeout:
			o.name = "upstream_error"
		case e.Kind == apierr.KindUnavailable:
			o.name = "unavailable" // vaultd
		default:
			o.name = "refused"
		}
	}
	f.Requests.WithLabelValues(o.route, o.name).Inc()
	f.Redacted.Add(float64(o.redacted))
}

var answerRefusals = map[string]bool{CodeEchoedCard: true, CodeEncodingUnsupported: true, CodeEncodingInvalid: true, CodeCompressionRatio: true, CodeResponseTooLarge: true, CodePartialContent: true}

type outcome struct {
	route, name string
	redacted    int
}

func (f *Forwarder) serve(w http.ResponseWriter, r *http.Request, o *outcome) *apierr.Error {
	ctx := r.Context()
	merchant, err := f.cfg.Authenticate(ctx, r.Header.Get("Authorization"))
	if err != nil {
		return apierr.From(err)
	}
	u, host, e := destination(r.Header.Values(HeaderDestination))
	if e != nil {
		return e
	}
	for _, h := range []string{"Range", "If-Range"} {
		if len(r.Header.Values(h)) > 0 {
			// A part of an answer could hold part of a card number that the
			// scanner cannot recognise; and the header may not be dropped silently.
			return apierr.Invalid("header_not_allowed", h, "the "+h+" header is not supported by /v1/forward: the gateway relays whole answers only")
		}
	}
	table := f.cfg.Routes.Table()
	route, miss := table.Match(merchant, r.Method, host, u.Path)
	if route == nil {
		// The host is the merchant's text (a card number may be spelt in it
		// with any separator): it is not logged; the reason names routes only.
		f.cfg.Logger.Info("forward refused", "merchant", merchant, "reason", miss.Reason)
		return notAllowed(miss.Reason)
	}
	o.route = route.Name
	var body []byte
	if r.Body != nil {
		if body, err = io.ReadAll(r.Body); err != nil {
			return apierr.Invalid(apierr.CodeMalformedBody, "body", "request body could not be read")
		}
	}
	spots, e := find(route, r, body)
	if e != nil {
		return e
	}
	tokens := map[string]bool{} // token -> needs its CVC
	for _, s := range spots {
		for _, fld := range s.reveal.Fields() {
			tokens[s.token] = tokens[s.token] || fld == FieldCVC
		}
	}
	dry, ok := parseBool(r.Header.Get(HeaderDryRun))
	if !ok {
		return apierr.Invalid("dry_run_invalid", HeaderDryRun, "Obol-Dry-Run must be true or false")
	}
	if dry {
		o.name = "dry_run"
		return f.dryRun(w, r, merchant, route, u, spots, tokens)
	}

	cards := map[string]*Revealed{}
	defer func() {
		for _, c := range cards {
			c.Wipe()
		}
	}()
	for tok, cvc := range tokens {
		c, e := f.reveal(ctx, merchant, tok, cvc, route, host)
		if e != nil {
			for _, s := range spots {
				if s.token == tok {
					e = apierr.New(e.Kind, e.Code, s.reveal.Location(), e.Message)
					break
				}
			}
			return e
		}
		cards[tok] = c
	}

	var bodySpans []span
	hdr := upstreamHeaders(r.Header)
	var hdrBufs [][]byte
	for _, s := range spots {
		if !s.header {
			bodySpans = append(bodySpans, s.span)
			continue
		}
		v, err := s.reveal.render(nil, cards[s.token])
		hdrBufs = append(hdrBufs, v)
		if err != nil {
			return cvcGone(s.reveal)
		}
		// net/http takes header values as strings: a header reveal's card
		// data cannot be wiped afterwards (documented; prefer body fields).
		hdr.Set(s.reveal.Header, string(v))
	}
	sort.Slice(bodySpans, func(i, j int) bool { return bodySpans[i].start < bodySpans[j].start })
	out, err := splice(body, bodySpans, cards)
	defer clear(out)
	defer func() {
		for _, b := range hdrBufs {
			clear(b)
		}
	}()
	if err != nil {
		if errors.Is(err, errNoCVC) {
			for _, s := range bodySpans {
				if slices.Contains(s.reveal.Fields(), FieldCVC) {
					return cvcGone(s.reveal)
				}
			}
		}
		return apierr.Invalid("route_invalid", "body", err.Error())
	}

	uctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(uctx, r.Method, u.String(), bytes.NewReader(out))
	if err != nil {
		return apierr.Invalid("destination_invalid", HeaderDestination, "Obol-Destination could not be used")
	}
	req.Header = hdr
	req.ContentLength = int64(len(out))
	resp, err := f.cfg.Client.Do(req)
	if err != nil {
		// The transport's error text quotes what the upstream sent (a
		// header line, a status, a length): only its class is logged.
		cls := transportClass(err)
		f.cfg.Logger.Warn("forward upstream failed", "merchant", merchant, "route", route.Name, "class", cls)
		switch cls {
		case classTimeout:
			return apierr.New(apierr.KindGatewayTimeout, "upstream_timeout", "", "the destination did not answer in time")
		case classMalformed:
			return apierr.New(apierr.KindBadGateway, CodeAnswerMalformed, "", "the destination's answer is not well-formed HTTP; nothing of it is relayed")
		}
		return apierr.New(apierr.KindBadGateway, "upstream_unavailable", "", "the destination could not be reached ("+cls+")")
	}
	defer resp.Body.Close()
	rb, e := readAnswer(resp, f.cfg.MaxResponse, f.cfg.MaxRatio)
	if e != nil {
		f.cfg.Logger.Warn("forward answer refused", "merchant", merchant, "route", route.Name, "host", host, "status", resp.StatusCode, "code", e.Code)
		return e
	}
	defer clear(rb)
	red := redactorFor(cards)
	defer red.Wipe()
	for _, s := range spots {
		if slices.Contains(s.reveal.Fields(), FieldCVC) {
			// The exact text sent with the CVC in it ("12/2031 123"), should
			// the upstream echo it.
			lit, _ := s.reveal.render(nil, cards[s.token])
			red.AddLiteral(lit)
			clear(lit)
		}
	}
	n := red.Redact(rb)
	relay := http.Header{}
	for k, vs := range resp.Header {
		if hopByHop[k] || answerDropped[k] {
			continue
		}
		name := []byte(k)
		n += red.RedactHeader(name)
		for _, v := range vs {
			b := []byte(v)
			n += red.RedactHeaderValue(name, b)
			relay[string(name)] = append(relay[string(name)], string(b))
		}
	}
	// The backstop: whatever the redactor did not recognise, a revealed
	// number still readable in the answer's digits refuses it whole.
	if echoed(red, relay, rb) {
		f.cfg.Logger.Warn("forward answer refused", "merchant", merchant, "route", route.Name, "status", resp.StatusCode, "code", CodeEchoedCard)
		o.redacted = n
		return badAnswer(CodeEchoedCard, "the destination's answer spells a revealed card number in a form the gateway does not mask; it is not relayed")
	}
	for k, vs := range relay {
		w.Header()[k] = vs
	}
	// Trailers (resp.Trailer) are not relayed: they are dropped whole.
	o.name, o.redacted = "forwarded", n
	w.Header().Set(HeaderRoute, route.Name)
	w.Header().Set(HeaderRedacted, strconv.Itoa(n))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(rb)
	f.cfg.Logger.Info("forwarded", "merchant", merchant, "route", route.Name, "host", host, "status", resp.StatusCode, "tokens", len(cards), "redacted", n)
	return nil
}

func cvcGone(rv *Reveal) *apierr.Error {
	return apierr.New(apierr.KindFailedPrecondition, "cvc_unavailable", rv.Location(), errNoCVC.Error())
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes":
		return true, true
	case "", "0", "false", "no":
		return false, true
	}
	return false, false
}

// Classes of a failed upstream exchange, the only thing logged of it: the
// transport's error text quotes the upstream's bytes (a malformed header
// line, status or length), which may hold card data.
const (
	classTimeout   = "timeout"
	classDNS       = "dns"
	classDial      = "dial"
	classTLS       = "tls"
	classClosed    = "connection_closed"
	classMalformed = "malformed_answer"
)

// CodeAnswerMalformed is the 502 of an answer that is not well-formed HTTP.
const CodeAnswerMalformed = "upstream_answer_malformed"

// transportClass classifies an error of http.Client.Do into a fixed set.
// What the transport does not type (its parse errors of the status line,
// headers, lengths and codings) is a malformed answer.
func transportClass(err error) string {
	var (
		ne   net.Error
		dns  *net.DNSError
		op   *net.OpError
		rec  tls.RecordHeaderError
		alrt tls.AlertError
		cv   *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		he   x509.HostnameError
		ci   x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return classTimeout
	case errors.As(err, &dns):
		return classDNS
	case errors.As(err, &rec), errors.As(err, &alrt), errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci):
		return classTLS
	case errors.As(err, &op) && op.Op == "dial", errors.Is(err, syscall.ECONNREFUSED):
		return classDial
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return classClosed
	}
	return classMalformed
}

// CodeEchoedCard refuses an answer that still spells a revealed card number
// once masked (the backstop, panscan.Redactor.Echoed).
const CodeEchoedCard = "upstream_echoed_card"

// echoed runs the backstop over the answer as the merchant gets it: the
// relayed headers (names and values) in the order they are written,
// sorted by name, then the body.
func echoed(red *panscan.Redactor, h http.Header, body []byte) bool {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([][]byte, 0, 2*len(keys)+1)
	for _, k := range keys {
		parts = append(parts, []byte(k+": "))
		for _, v := range h[k] {
			parts = append(parts, []byte(v+"\n"))
		}
	}
	return red.Echoed(append(parts, body)...)
}

// answerDropped are the answer's headers the gateway does not relay: the
// body it hands back is decoded (no Content-Encoding), its own length, and
// masked, so digests of the upstream's bytes no longer hold.
var answerDropped = map[string]bool{"Content-Length": true, "Content-Encoding": true, "Content-Md5": true, "Digest": true, "Content-Digest": true, "Repr-Digest": true, "Accept-Ranges": true}

// redactorFor masks what the request revealed: each card's number, and its
// CVC when it was revealed.
func redactorFor(cards map[string]*Revealed) *panscan.Redactor {
	var numbers, cvcs [][]byte
	for _, c := range cards {
		numbers = append(numbers, c.Number)
		if len(c.CVC) > 0 {
			cvcs = append(cvcs, c.CVC)
		}
	}
	return panscan.NewRedactor(numbers, cvcs)
}

var hopByHop = map[string]bool{"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true}

// upstreamHeaders copies the merchant's headers minus Obol's own, its
// Authorization (Obol's key) and hop-by-hop ones;
// Obol-Upstream-Authorization becomes the upstream's Authorization.
func upstreamHeaders(in http.Header) http.Header {
	out := http.Header{}
	for k, vs := range in {
		if hopByHop[k] || k == "Authorization" || k == "Host" || k == "Content-Length" || k == "Accept-Encoding" || strings.HasPrefix(k, "Obol-") {
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	// The gateway decodes and scans the answer, whatever the merchant
	// accepts: it asks for what it can decode and answers uncompressed.
	out.Set("Accept-Encoding", acceptEncoding)
	if v := in.Get(HeaderUpstreamAuthz); v != "" {
		out.Set("Authorization", v)
	}
	return out
}

func vaultUnavailable() *apierr.Error {
	return apierr.New(apierr.KindUnavailable, "vault_unavailable", "", "the vault is unavailable; nothing was sent, retry later")
}

// reveal detokenizes one token for the merchant, sealed to the gateway's
// current recipient key and bound to this request by its nonce.
func (f *Forwarder) reveal(ctx context.Context, merchant, tok string, cvc bool, route *Route, host string) (*Revealed, *apierr.Error) {
	rcpt, err := f.keys.Current()
	if err != nil {
		return nil, apierr.From(err)
	}
	req := &vaultv1.DetokenizeRequest{MerchantId: merchant, Token: tok, IncludeCvc: cvc, Purpose: "forward " + route.Name, DestinationHost: host}
	if err := rcpt.Ask(req); err != nil {
		return nil, apierr.From(err)
	}
	vctx, cancel := context.WithTimeout(ctx, f.cfg.CallTimeout)
	rev, err := f.cfg.Vault.Detokenize(vctx, req)
	cancel()
	if err != nil {
		switch status.Code(err) {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			return nil, vaultUnavailable()
		case codes.NotFound:
			return nil, apierr.New(apierr.KindNotFound, "token_not_found", "", "no such token")
		}
		return nil, apierr.From(err)
	}
	plain, err := rcpt.OpenAnswer(req, rev)
	if errors.Is(err, revealbox.ErrUnbound) || errors.Is(err, revealbox.ErrOpen) {
		// An older vaultd (unbound), or a box that is not this request's
		// (a hop between gateway and vaultd replaying or altering
		// answers): nothing is forwarded.
		f.cfg.Logger.Error("reveal refused", "merchant", merchant, "route", route.Name, "err", err)
		return nil, apierr.New(apierr.KindUnavailable, "vault_unavailable", "", "the vault's answer was refused (the gateway logged why: reveal refused); nothing was sent. A CVC held for the card was used up if the route reveals it: a retry goes without it")
	}
	if err != nil {
		return nil, apierr.Wrap(apierr.KindInternal, apierr.CodeInternal, "internal error", err)
	}
	c, err := card.Decode(plain)
	clear(plain)
	if err != nil {
		return nil, apierr.Wrap(apierr.KindInternal, apierr.CodeInternal, "internal error", err)
	}
	out := &Revealed{ExpMonth: c.ExpMonth, ExpYear: c.ExpYear}
	out.Number = append([]byte(nil), c.Number.RevealDigits()...)
	if !c.CVC.IsZero() {
		out.CVC = append([]byte(nil), c.CVC.RevealDigits()...)
	}
	c.Number.Wipe()
	c.CVC.Wipe()
	return out, nil
}

// DryRunReveal is one reveal as a dry run explains it.
type DryRunReveal struct {
	Location string   `json:"location"`
	Token    string   `json:"token"`
	Fields   []string `json:"fields"`
	As       string   `json:"as"`
}

// DryRun is a dry run's answer: what would be revealed where, and nothing
// revealed or sent.
type DryRun struct {
	DryRun         bool              `json:"dry_run"`
	Route          string            `json:"route"`
	Method         string            `json:"method"`
	Destination    string            `json:"destination"`
	Reveals        []DryRunReveal    `json:"reveals"`
	Tokens         map[string]string `json:"tokens"`
	UpstreamCalled bool              `json:"upstream_called"`
}

func (f *Forwarder) dryRun(w http.ResponseWriter, r *http.Request, merchant string, route *Route, u *url.URL, spots []located, tokens map[string]bool) *apierr.Error {
	out := DryRun{DryRun: true, Route: route.Name, Method: r.Method, Destination: panscan.Loose(panscan.String(u.String())), Tokens: map[string]string{}}
	for _, s := range spots {
		as := "string"
		if s.reveal.As == "number" {
			as = "number"
		}
		out.Reveals = append(out.Reveals, DryRunReveal{Location: s.reveal.Location(), Token: s.token, Fields: s.reveal.Fields(), As: as})
	}
	// Token checks read metadata only (as the merchant): no reveal.
	for tok := range tokens {
		vctx, cancel := context.WithTimeout(r.Context(), f.cfg.CallTimeout)
		vctx = metadata.NewOutgoingContext(vctx, metadata.Pairs("authorization", r.Header.Get("Authorization")))
		_, err := f.cfg.Vault.GetToken(vctx, &vaultv1.GetTokenRequest{Token: tok})
		cancel()
		switch status.Code(err) {
		case codes.OK:
			out.Tokens[tok] = "found"
		case codes.NotFound:
			out.Tokens[tok] = "not_found"
		case codes.Unavailable, codes.DeadlineExceeded:
			return apierr.New(apierr.KindUnavailable, "vault_unavailable", "", "the vault is unavailable; retry later")
		default:
			return apierr.From(err)
		}
	}
	f.cfg.Logger.Info("forward dry run", "merchant", merchant, "route", route.Name)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(HeaderRoute, route.Name)
	return writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) *apierr.Error {
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(v)
	return nil
}
