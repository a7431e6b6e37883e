// Package revealbox seals revealed card data from vaultd to the one gateway
// request that asked for it. The gateway makes an ephemeral X25519 key pair
// (per Detokenize call, or per Keyring lifetime) and sends the public half;
// vaultd seals the card to it
// (X25519 → HKDF-SHA256 → XChaCha20-Poly1305, the AAD binding the request:
// RequestAAD).
// So plaintext never appears in a protobuf message, where generated String()
// methods would print it, and a hop that relays the call without rewriting
// it (a TLS-terminating proxy, a capture of its traffic) sees only
// ciphertext and cannot hand one request's box to another. The box is
// anonymous: it proves neither to the gateway that vaultd sealed it nor to
// vaultd that the recipient key is the gateway's. A hop that rewrites
// requests (its own recipient key in place of the gateway's) reads the card
// and can seal a card of its choice to the gateway. Any TLS-terminating hop
// in front of vaultd must hold a gateway-identity certificate (vaultd
// reveals only to a direct peer whose verified certificate carries it), with
// which it could call Detokenize itself: the control against it is that
// identity and end-to-end mTLS, not the box.
// It handles card plaintext as opaque bytes. Keyring and Sealer reuse the
// key agreement for a bounded lifetime (see session.go).
package revealbox

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"

	vaultv1 "github.com/obolpay/obol/proto/obol/vault/v1"
)

// KeySize is the size of an X25519 public key.
const KeySize = 32

// ErrOpen: the box does not open with this key and AAD (not sealed to
// this key, for another request, or altered).
var ErrOpen = errors.New("revealbox: cannot open")

// ErrUnbound: vaultd answered a request that carried a nonce with a box not
// bound to it. vaultd is older than the gateway (upgrade vaultd first); the
// gateway does not open such a box, since a box bound to merchant and token
// only could be another request's.
var ErrUnbound = errors.New("revealbox: vaultd did not bind the box to the request (is vaultd older than the gateway? upgrade vaultd first)")

// Recipient holds an ephemeral private key: for one call, or for the
// lifetime a Keyring gives it. It remembers the box keys it derived (per
// sender key), so boxes from a Sealer cost one agreement per lifetime. Safe
// for concurrent use.
type Recipient struct {
	priv *ecdh.PrivateKey
	pub  []byte
	mu   sync.Mutex
	keys map[string]cipher.AEAD
}

// NewRecipient makes an ephemeral key pair.
func NewRecipient() (*Recipient, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Recipient{priv: k, pub: k.PublicKey().Bytes(), keys: map[string]cipher.AEAD{}}, nil
}

// PublicKey is sent in the Detokenize request.
func (r *Recipient) PublicKey() []byte { return append([]byte(nil), r.pub...) }

func deriveKey(shared, ephPub, recipPub []byte) ([]byte, error) {
	salt := append(append([]byte{}, ephPub...), recipPub...)
	k := make([]byte, chacha20poly1305.KeySize)
	_, err := io.ReadFull(hkdf.New(sha256.New, shared, salt, []byte("obol-revealbox-v1")), k)
	return k, err
}

// Seal encrypts plaintext to recipientPub with a fresh ephemeral key.
// Output: ephPub | nonce | ciphertext.
func Seal(recipientPub, plaintext, aad []byte) ([]byte, error) {
	ephPub, aead, err := agree(recipientPub)
	if err != nil {
		return nil, err
	}
	return sealWith(ephPub, aead, plaintext, aad)
}

// Open decrypts a box sealed to r.
func (r *Recipient) Open(box, aad []byte) ([]byte, error) {
	if len(box) < KeySize+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		return nil, ErrOpen
	}
	aead, err := r.aead(box[:KeySize])
	if err != nil {
		return nil, err
	}
	n := box[KeySize : KeySize+aead.NonceSize()]
	pt, err := aead.Open(nil, n, box[KeySize+aead.NonceSize():], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// aead is the box key for a sender's ephemeral key, derived once.
func (r *Recipient) aead(ephPub []byte) (cipher.AEAD, error) {
	r.mu.Lock()
	a, ok := r.keys[string(ephPub)]
	r.mu.Unlock()
	if ok {
		return a, nil
	}
	ep, err := ecdh.X25519().NewPublicKey(ephPub)
	if err != nil {
		return nil, ErrOpen
	}
	shared, err := r.priv.ECDH(ep)
	if err != nil {
		return nil, ErrOpen
	}
	key, err := deriveKey(shared, ephPub, r.pub)
	clear(shared)
	if err != nil {
		return nil, err
	}
	a, err = chacha20poly1305.NewX(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if len(r.keys) >= maxKeys {
		clear(r.keys)
	}
	r.keys[string(ephPub)] = a
	r.mu.Unlock()
	return a, nil
}

// AAD binds a box to merchant and token only: the binding vaultd gives a
// request without a nonce (a gateway older than RequestAAD). Such a box
// opens for any reveal of that merchant and token sealed to the same key.
func AAD(merchantID, token string) []byte {
	return []byte("obol-reveal\x00" + merchantID + "\x00" + token)
}

// NonceSize is the size of a reveal request's nonce.
const NonceSize = 16

// NewNonce returns a fresh random request nonce.
func NewNonce() ([]byte, error) {
	n := make([]byte, NonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, err
	}
	return n, nil
}

// Request is what a box is bound to: one reveal request, as the gateway sent
// it and vaultd received it.
type Request struct {
	MerchantID      string
	Token           string
	Nonce           []byte
	IncludeCVC      bool
	Purpose         string
	DestinationHost string
}

// RequestAAD binds a box to one reveal request. With a fresh Nonce per
// request, a box opens for the request that asked for it and no other,
// however long the recipient key serves: a hop between gateway and vaultd
// can neither hand one request's box to another nor change what the
// request asked for (the CVC, the purpose or the destination host the
// audit trail records) without the box failing to open. Each field is
// length-prefixed, so no two requests share an AAD.
func RequestAAD(r Request) []byte {
	out := make([]byte, 0, 32+len(r.MerchantID)+len(r.Token)+len(r.Nonce)+len(r.Purpose)+len(r.DestinationHost))
	out = append(out, "obol-reveal-v2\x00"...)
	for _, f := range []string{r.MerchantID, r.Token, string(r.Nonce), r.Purpose, r.DestinationHost} {
		out = binary.AppendUvarint(out, uint64(len(f)))
		out = append(out, f...)
	}
	if r.IncludeCVC {
		return append(out, 1)
	}
	return append(out, 0)
}

// DetokenizeAAD is RequestAAD of a Detokenize request: what vaultd seals
// the answer with and what the gateway opens it with, from the same fields.
func DetokenizeAAD(req *vaultv1.DetokenizeRequest) []byte {
	return RequestAAD(Request{MerchantID: req.GetMerchantId(), Token: req.GetToken(), Nonce: req.GetRequestNonce(),
		IncludeCVC: req.GetIncludeCvc(), Purpose: req.GetPurpose(), DestinationHost: req.GetDestinationHost()})
}

// Ask sets req's recipient key to r's and gives it a fresh nonce, so that
// the answer is bound to this request.
func (r *Recipient) Ask(req *vaultv1.DetokenizeRequest) error {
	n, err := NewNonce()
	if err != nil {
		return err
	}
	req.RecipientPublicKey, req.RequestNonce = r.PublicKey(), n
	return nil
}

// OpenAnswer opens vaultd's answer to req (sent after Ask): ErrUnbound if
// vaultd did not bind it to req, ErrOpen if it is not req's box.
func (r *Recipient) OpenAnswer(req *vaultv1.DetokenizeRequest, resp *vaultv1.DetokenizeResponse) ([]byte, error) {
	if !resp.GetRequestBound() {
		return nil, ErrUnbound
	}
	return r.Open(resp.GetSealedCard(), DetokenizeAAD(req))
}
