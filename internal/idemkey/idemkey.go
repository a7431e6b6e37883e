// Package idemkey is the one parser of the Idempotency-Key every Obol
// service accepts (REST header, gRPC metadata), and the one place that
// turns a key into the form that is stored.
//
// A key is 1 to 255 printable ASCII characters (0x20 to 0x7E, no leading
// or trailing space, no comma: "a1, a2" is what a proxy makes of a key
// sent twice), sent once, as text (gRPC idempotency-key-bin is refused); anything else is idempotency_key_invalid
// naming the Idempotency-Key field, never ignored. A key that looks like a
// card number is refused too: keys are stored and logged by operators, and
// must never carry card data. Keys are never stored in clear: Storage
// hashes the key together with the scope it was used in (the merchant's
// key type and the operation family), so a publishable key cannot claim a
// key the merchant's secret key will use later.
//
// PAN-free: it checks for card numbers through internal/cardtext and keeps
// nothing; services outside PCI scope may use it.
package idemkey

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/cardtext"
)

// Header is the HTTP header (and, lower-cased, the gRPC metadata key).
const Header = "Idempotency-Key"

// MD is the gRPC metadata key.
const MD = "idempotency-key"

// MaxLen is the longest key accepted, in bytes.
const MaxLen = 255

// Field names the key in errors.
const Field = Header

// ErrInvalid is the public error for a malformed key; compare with errors.Is.
var ErrInvalid = apierr.Invalid(apierr.CodeIdempotencyKeyInvalid, Field, "Idempotency-Key must be sent once, as 1 to 255 printable ASCII characters")

// Public errors of the parser.
var (
	errTwice    = apierr.Invalid(apierr.CodeIdempotencyKeyInvalid, Field, "Idempotency-Key must be sent once")
	errEmpty    = apierr.Invalid(apierr.CodeIdempotencyKeyInvalid, Field, "Idempotency-Key is empty; omit the header or send 1 to 255 printable ASCII characters")
	errLong     = apierr.Invalid(apierr.CodeIdempotencyKeyInvalid, Field, "Idempotency-Key must be at most 255 characters")
	errChars    = apierr.Invalid(apierr.CodeIdempotencyKeyInvalid, Field, "Idempotency-Key must be printable ASCII (0x20 to 0x7E) without leading or trailing spaces")
	errComma    = apierr.Invalid(apierr.CodeIdempotencyKeyInvalid, Field, "Idempotency-Key must not contain a comma (a proxy merges a header sent twice into one, comma-separated)")
	errBinary   = apierr.Invalid(apierr.CodeIdempotencyKeyInvalid, Field, "idempotency-key-bin is not accepted; send the key as text under idempotency-key")
	errCardLike = apierr.Invalid(apierr.CodeIdempotencyKeyInvalid, Field, "Idempotency-Key looks like it contains a card number; use an order or request id")
)

// Key is a parsed Idempotency-Key; the zero Key means none was sent. Its
// text is unexported so that it is not printed or stored by accident.
type Key struct {
	raw string
}

// IsZero reports whether no key was sent.
func (k Key) IsZero() bool { return k.raw == "" }

// String never prints the key.
func (k Key) String() string {
	if k.raw == "" {
		return "idemkey(none)"
	}
	return "idemkey(set)"
}

// Raw is the key as the client sent it, for deriving ids (hash it before
// storing anything derived from it). Callers are few and greppable.
func (k Key) Raw() string { return k.raw }

// Storage is the stored form of the key within scope: hex SHA-256 over a
// label, the scope and the key. Equal keys in different scopes (a
// publishable and a secret key of one merchant) never collide. "" for the
// zero Key.
func (k Key) Storage(scope string) string {
	if k.raw == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("obol idempotency-key v1\x00" + scope + "\x00" + k.raw))
	return hex.EncodeToString(sum[:])
}

// Parse validates the values received for the key (every header line or
// metadata value under the name). No value is no key; more than one, an
// empty one, a long one, one with a byte outside printable ASCII, or one
// that looks like a card number is ErrInvalid (with a specific message).
func Parse(values []string) (Key, error) {
	switch len(values) {
	case 0:
		return Key{}, nil
	case 1:
	default:
		return Key{}, errTwice
	}
	v := values[0]
	switch {
	case v == "":
		return Key{}, errEmpty
	case len(v) > MaxLen:
		return Key{}, errLong
	case strings.TrimSpace(v) != v:
		return Key{}, errChars
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return Key{}, errChars
		}
	}
	if strings.IndexByte(v, ',') >= 0 {
		return Key{}, errComma
	}
	if cardtext.Contains(v) {
		return Key{}, errCardLike
	}
	return Key{raw: v}, nil
}

// FromContext parses the key from incoming gRPC metadata (REST requests
// arrive there through the grpc-gateway, see internal/httpapi).
// A binary key (idempotency-key-bin) is refused, never ignored.
func FromContext(ctx context.Context) (Key, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get(MD+"-bin")) > 0 {
		return Key{}, errBinary
	}
	return Parse(md.Get(MD))
}
