// Package forward is the gateway's generic outbound proxy: a merchant sends
// its own acquirer-format request to POST /v1/forward with the destination
// in the Obol-Destination header, tokens where card fields go, and the
// gateway reveals the cards only into the places an allowlisted route names,
// only towards that route's exact https host, paths and methods. Upstream
// answers are decoded (gzip, deflate; anything else is refused) and
// scanned, and the revealed card data, and anything that looks like a card
// number, is masked in every form panscan recognises before the merchant
// sees it. PCI zone (proxy/).
package forward

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"
)

// File is a route file:
//
//	routes:
//	  - name: acme-charges
//	    host: api.acme-acquirer.example      # exact host[:port]; https only
//	    paths: ["/v1/charges", "/v1/cards/*"] # exact, or a prefix ending in /*
//	    methods: [POST]
//	    merchants: [mer_123]                   # optional: default every merchant
//	    reveal:
//	      - json: card.number                  # the token there becomes…
//	        value: "{{token.number}}"          # …the card number
//	      - json: card.exp_month
//	        value: "{{token.exp_month}}"
//	        as: number                         # a JSON number, not a string
//	      - form: card[cvc]
//	        value: "{{token.cvc}}"
//	      - header: X-Card-Expiry
//	        value: "{{token.exp_month}}/{{token.exp_year}}"
type File struct {
	Routes []Route `yaml:"routes"`
}

// Route allowlists one upstream and says where tokens are revealed.
type Route struct {
	Name      string   `yaml:"name"`
	Host      string   `yaml:"host"`
	Paths     []string `yaml:"paths"`
	Methods   []string `yaml:"methods"`
	Merchants []string `yaml:"merchants"`
	Reveal    []Reveal `yaml:"reveal"`

	merchants map[string]bool
	methods   map[string]bool
}

// Reveal is one place a token is replaced by card data. Exactly one of
// JSON (a dotted path; array elements by index: items.0.pan), Form (a
// form field name) or Header (a header name) is set.
type Reveal struct {
	JSON   string `yaml:"json"`
	Form   string `yaml:"form"`
	Header string `yaml:"header"`
	Value  string `yaml:"value"`
	// As is "string" (default) or "number" (JSON only; the value must be
	// exactly one of {{token.exp_month}}, {{token.exp_year}}).
	As string `yaml:"as"`

	tmpl []part
}

// Card fields a template can name.
const (
	FieldNumber   = "number"
	FieldExpMonth = "exp_month"
	FieldExpYear  = "exp_year"
	FieldCVC      = "cvc"
)

type part struct {
	lit   string
	field string // one of the Field* constants, or "" for lit
}

// Location names where a reveal happens, as errors and dry runs show it.
func (r Reveal) Location() string {
	switch {
	case r.JSON != "":
		return "json:" + r.JSON
	case r.Form != "":
		return "form:" + r.Form
	}
	return "header:" + r.Header
}

// Fields lists the card fields the template reveals.
func (r Reveal) Fields() []string {
	var out []string
	for _, p := range r.tmpl {
		if p.field != "" {
			out = append(out, p.field)
		}
	}
	return out
}

var (
	placeholder = regexp.MustCompile(`\{\{\s*([^{}]*?)\s*\}\}`)
	hostRe      = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$`)
	nameRe      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	headerRe    = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
	methodsOK   = map[string]bool{"GET": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true}
	// Headers a route may not reveal into: the gateway owns them.
	reservedHeaders = map[string]bool{"Host": true, "Content-Length": true, "Content-Type": true, "Transfer-Encoding": true, "Connection": true, "Authorization": true}
)

func compileTemplate(v string) ([]part, error) {
	if v == "" {
		return nil, errors.New("value is required (e.g. \"{{token.number}}\")")
	}
	var out []part
	rest := v
	for {
		loc := placeholder.FindStringSubmatchIndex(rest)
		if loc == nil {
			break
		}
		if loc[0] > 0 {
			out = append(out, part{lit: rest[:loc[0]]})
		}
		name := rest[loc[2]:loc[3]]
		field, ok := strings.CutPrefix(name, "token.")
		switch {
		case !ok:
			return nil, fmt.Errorf("unknown placeholder {{%s}}: use {{token.number}}, {{token.exp_month}}, {{token.exp_year}} or {{token.cvc}}", name)
		case field != FieldNumber && field != FieldExpMonth && field != FieldExpYear && field != FieldCVC:
			return nil, fmt.Errorf("unknown card field {{%s}}: use number, exp_month, exp_year or cvc", name)
		}
		out = append(out, part{field: field})
		rest = rest[loc[1]:]
	}
	if rest != "" {
		out = append(out, part{lit: rest})
	}
	hasField := false
	for _, p := range out {
		if p.field != "" {
			hasField = true
		}
		if strings.ContainsAny(p.lit, "{}\"\\\r\n\x00") {
			return nil, fmt.Errorf("literal text %q: braces, quotes, backslashes and control characters are not allowed", p.lit)
		}
	}
	if !hasField {
		return nil, errors.New("value reveals nothing: name a card field, e.g. {{token.number}}")
	}
	return out, nil
}

func (r *Route) validate() error {
	if !nameRe.MatchString(r.Name) {
		return errors.New("name is required: letters, digits, _ . - (at most 64)")
	}
	switch {
	case r.Host == "":
		return errors.New("host is required (an exact host, e.g. api.acquirer.example)")
	case strings.Contains(r.Host, "://"):
		return fmt.Errorf("host %q: give the bare host; https is implied and the only scheme", r.Host)
	case strings.Contains(r.Host, "*"):
		return fmt.Errorf("host %q: wildcards are not allowed (exact hosts only)", r.Host)
	case !hostRe.MatchString(r.Host):
		return fmt.Errorf("host %q: not a lower-case host[:port] without a path", r.Host)
	}
	if len(r.Paths) == 0 {
		return errors.New("paths: at least one path is required")
	}
	for _, p := range r.Paths {
		prefix, wild := strings.CutSuffix(p, "/*")
		switch {
		case !strings.HasPrefix(p, "/"):
			return fmt.Errorf("path %q must start with /", p)
		case strings.Contains(prefix, "*"):
			return fmt.Errorf("path %q: * is only allowed as a trailing /*", p)
		case strings.Contains(p, "..") || strings.Contains(p, "//") || strings.ContainsAny(p, "?#%"):
			return fmt.Errorf("path %q: no .., //, query, fragment or escapes", p)
		case wild && prefix == "":
			return fmt.Errorf("path %q: /* would allow every path; list them", p)
		}
	}
	if len(r.Methods) == 0 {
		return errors.New("methods: at least one method is required")
	}
	r.methods = map[string]bool{}
	for _, m := range r.Methods {
		if !methodsOK[m] {
			return fmt.Errorf("method %q: use GET, POST, PUT, PATCH or DELETE (upper case)", m)
		}
		r.methods[m] = true
	}
	r.merchants = map[string]bool{}
	for _, m := range r.Merchants {
		if !strings.HasPrefix(m, "mer_") {
			return fmt.Errorf("merchant %q: not a merchant id (mer_…)", m)
		}
		r.merchants[m] = true
	}
	if len(r.Reveal) == 0 {
		return errors.New("reveal: at least one reveal is required (a route that reveals nothing needs no proxy)")
	}
	seen := map[string]bool{}
	for i := range r.Reveal {
		rv := &r.Reveal[i]
		n := 0
		for _, s := range []string{rv.JSON, rv.Form, rv.Header} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("reveal[%d]: set exactly one of json, form, header", i)
		}
		if err := checkLocation(rv); err != nil {
			return fmt.Errorf("reveal[%d]: %w", i, err)
		}
		if seen[rv.Location()] {
			return fmt.Errorf("reveal[%d]: %s is revealed twice", i, rv.Location())
		}
		seen[rv.Location()] = true
		tmpl, err := compileTemplate(rv.Value)
		if err != nil {
			return fmt.Errorf("reveal[%d] (%s): %w", i, rv.Location(), err)
		}
		rv.tmpl = tmpl
		switch rv.As {
		case "", "string":
		case "number":
			if rv.JSON == "" {
				return fmt.Errorf("reveal[%d]: as: number is for json reveals only", i)
			}
			if len(tmpl) != 1 || (tmpl[0].field != FieldExpMonth && tmpl[0].field != FieldExpYear) {
				return fmt.Errorf("reveal[%d]: as: number needs a value of exactly {{token.exp_month}} or {{token.exp_year}}", i)
			}
		default:
			return fmt.Errorf("reveal[%d]: as %q: use string or number", i, rv.As)
		}
	}
	return nil
}

func checkLocation(rv *Reveal) error {
	switch {
	case rv.JSON != "":
		for _, seg := range strings.Split(rv.JSON, ".") {
			if seg == "" {
				return fmt.Errorf("json path %q: empty segment", rv.JSON)
			}
		}
	case rv.Form != "":
		if strings.ContainsAny(rv.Form, "&=") {
			return fmt.Errorf("form field %q: no & or =", rv.Form)
		}
	default:
		if !headerRe.MatchString(rv.Header) {
			return fmt.Errorf("header %q: letters, digits and - only", rv.Header)
		}
		rv.Header = http.CanonicalHeaderKey(rv.Header)
		if reservedHeaders[rv.Header] || strings.HasPrefix(rv.Header, "Obol-") {
			return fmt.Errorf("header %s is the gateway's; it cannot carry card data", rv.Header)
		}
	}
	return nil
}

// Parse reads and validates a route file. Every problem names the route
// (by index and name) and the field.
func Parse(b []byte) (*Table, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("route file: %w", err)
	}
	names := map[string]bool{}
	for i := range f.Routes {
		r := &f.Routes[i]
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("routes[%d] (%s): %w", i, r.Name, err)
		}
		if names[r.Name] {
			return nil, fmt.Errorf("routes[%d] (%s): name used twice", i, r.Name)
		}
		names[r.Name] = true
	}
	return &Table{Routes: f.Routes}, nil
}

// Table is a validated set of routes.
type Table struct {
	Routes []Route
}

// Miss explains why no route matched (for the 403 and the log). It names
// only routes open to the merchant, and never the request's host, path or
// method, which are the merchant's text and might hold anything: a route
// scoped to other merchants is, for this merchant, not there at all.
type Miss struct{ Reason string }

// Match finds the route for a request: exact host, an allowed path and
// method, and the merchant allowed. The first matching route wins.
func (t *Table) Match(merchant, method, host, path string) (*Route, Miss) {
	reason := "no route allows this host"
	for i := range t.Routes {
		r := &t.Routes[i]
		if r.Host != host || len(r.merchants) > 0 && !r.merchants[merchant] {
			continue
		}
		if !r.pathOK(path) {
			reason = "route " + r.Name + " does not allow this path"
			continue
		}
		if !r.methods[method] {
			reason = "route " + r.Name + " does not allow this method"
			continue
		}
		return r, Miss{}
	}
	return nil, Miss{Reason: reason}
}

func (r *Route) pathOK(path string) bool {
	for _, p := range r.Paths {
		if prefix, ok := strings.CutSuffix(p, "/*"); ok {
			if strings.HasPrefix(path, prefix+"/") && len(path) > len(prefix)+1 {
				return true
			}
			continue
		}
		if path == p {
			return true
		}
	}
	return false
}

// Routes holds the active table of a route file and reloads it when the
// file changes; a bad file is refused whole and the previous table stays.
//
// A change is acted on only once two reloads in a row found the file with
// the same modification time and size, and the file did not change while
// it was read. A file written in place (truncated, then written, as an
// editor or a copy does) is otherwise read half-written: refused, or worse
// loaded with a prefix of its routes, a host cut short among them.
type Routes struct {
	path     string
	active   atomic.Pointer[Table]
	mu       sync.Mutex
	mod      time.Time // the file last loaded or refused
	size     int64
	seen     bool // a change seen by the previous reload, not yet acted on
	seenMod  time.Time
	seenSize int64
	Rejected atomic.Int64 // bad files refused by reloads
}

// Load reads the route file (its errors are start-up errors).
func Load(path string) (*Routes, error) {
	rs := &Routes{path: path}
	if _, err := rs.Reload(); err != nil {
		return nil, err
	}
	return rs, nil
}

// Static serves a fixed table (tests, embedding).
func Static(t *Table) *Routes {
	rs := &Routes{}
	rs.active.Store(t)
	return rs
}

// Table is the active table.
func (rs *Routes) Table() *Table { return rs.active.Load() }

// Reload re-reads the file if it changed; it reports whether a new table
// became active.
func (rs *Routes) Reload() (bool, error) {
	if rs.path == "" {
		return false, nil
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	st, err := os.Stat(rs.path)
	if err != nil {
		return false, fmt.Errorf("route file: %w", err)
	}
	if rs.active.Load() != nil {
		if st.ModTime().Equal(rs.mod) && st.Size() == rs.size {
			rs.seen = false
			return false, nil
		}
		if !rs.seen || !st.ModTime().Equal(rs.seenMod) || st.Size() != rs.seenSize {
			rs.seen, rs.seenMod, rs.seenSize = true, st.ModTime(), st.Size() // act at the next reload if it stays so
			return false, nil
		}
	}
	b, err := os.ReadFile(rs.path)
	if err != nil {
		return false, fmt.Errorf("route file: %w", err)
	}
	if rs.active.Load() != nil {
		after, err := os.Stat(rs.path)
		if err != nil {
			return false, fmt.Errorf("route file: %w", err)
		}
		if !after.ModTime().Equal(st.ModTime()) || after.Size() != st.Size() {
			rs.seen, rs.seenMod, rs.seenSize = true, after.ModTime(), after.Size() // written while read
			return false, nil
		}
	}
	rs.seen = false
	t, err := Parse(b)
	if err != nil {
		if rs.active.Load() != nil {
			rs.Rejected.Add(1)
			rs.mod, rs.size = st.ModTime(), st.Size() // refused once, not every tick
		}
		return false, fmt.Errorf("%s: %w", rs.path, err)
	}
	rs.active.Store(t)
	rs.mod, rs.size = st.ModTime(), st.Size()
	return true, nil
}
