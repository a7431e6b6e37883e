package revealbox

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func TestOpen(t *testing.T) {
	r, err := NewRecipient()
	require.NoError(t, err)
	other, err := NewRecipient()
	require.NoError(t, err)
	plain := []byte("4242424242424242")
	aad := AAD("mer_1", "tok_1")
	sealers := map[string]func(pub, pt, aad []byte) ([]byte, error){
		"fresh key per box": Seal,
		"sealer":            NewSealer(0, nil).Seal,
	}
	for name, seal := range sealers {
		t.Run(name, func(t *testing.T) {
			box, err := seal(r.PublicKey(), plain, aad)
			require.NoError(t, err)
			assert.False(t, bytes.Contains(box, plain), "the box holds no plaintext")
			got, err := r.Open(box, aad)
			require.NoError(t, err)
			assert.Equal(t, plain, got)

			cases := map[string]struct {
				rcpt *Recipient
				box  []byte
				aad  []byte
			}{
				"other token":     {r, box, AAD("mer_1", "tok_2")},
				"other merchant":  {r, box, AAD("mer_2", "tok_1")},
				"other recipient": {other, box, aad},
				"tampered":        {r, append(append([]byte(nil), box[:len(box)-1]...), box[len(box)-1]^1), aad},
				"truncated":       {r, box[:KeySize+10], aad},
				"empty":           {r, nil, aad},
			}
			for name, c := range cases {
				t.Run(name, func(t *testing.T) {
					_, err := c.rcpt.Open(c.box, c.aad)
					require.ErrorIs(t, err, ErrOpen)
				})
			}
		})
	}
}

func TestSealRefusesBadRecipientKey(t *testing.T) {
	cases := map[string][]byte{
		"short":       make([]byte, 31),
		"empty":       nil,
		"low order 0": make([]byte, 32), // the all-zero point: no shared secret
	}
	for name, pub := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := NewSealer(0, nil).Seal(pub, []byte("x"), nil)
			require.Error(t, err)
			_, err = Seal(pub, []byte("x"), nil)
			require.Error(t, err)
		})
	}
}

func TestSealerReusesKeyWithinLifetime(t *testing.T) {
	clk := newClock()
	s := NewSealer(time.Minute, clk.Now)
	r1, err := NewRecipient()
	require.NoError(t, err)
	r2, err := NewRecipient()
	require.NoError(t, err)
	seal := func(r *Recipient) []byte {
		box, err := s.Seal(r.PublicKey(), []byte("card"), nil)
		require.NoError(t, err)
		got, err := r.Open(box, nil)
		require.NoError(t, err)
		require.Equal(t, []byte("card"), got)
		return box
	}
	a, b := seal(r1), seal(r1)
	assert.Equal(t, a[:KeySize], b[:KeySize], "same sender key within the lifetime")
	assert.NotEqual(t, a[KeySize:KeySize+24], b[KeySize:KeySize+24], "a fresh nonce per box")
	assert.NotEqual(t, a[:KeySize], seal(r2)[:KeySize], "one sender key per recipient key")
	clk.Add(time.Minute)
	assert.NotEqual(t, a[:KeySize], seal(r1)[:KeySize], "a new sender key once the lifetime is over")
}

func TestKeyringRenewsAfterLifetime(t *testing.T) {
	clk := newClock()
	k := NewKeyring(time.Minute, clk.Now)
	first, err := k.Current()
	require.NoError(t, err)
	box, err := NewSealer(0, nil).Seal(first.PublicKey(), []byte("card"), nil)
	require.NoError(t, err)
	clk.Add(59 * time.Second)
	same, err := k.Current()
	require.NoError(t, err)
	assert.Same(t, first, same)
	clk.Add(time.Second)
	next, err := k.Current()
	require.NoError(t, err)
	assert.NotEqual(t, first.PublicKey(), next.PublicKey())
	got, err := first.Open(box, nil)
	require.NoError(t, err, "a key that was current when a call began still opens its answer")
	assert.Equal(t, []byte("card"), got)
}

func TestSealerForgetsPastBound(t *testing.T) {
	s := NewSealer(0, nil)
	for range maxKeys + 1 {
		r, err := NewRecipient()
		require.NoError(t, err)
		_, err = s.Seal(r.PublicKey(), []byte("x"), nil)
		require.NoError(t, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	assert.LessOrEqual(t, len(s.keys), maxKeys)
}

func TestConcurrentUse(t *testing.T) {
	k := NewKeyring(0, nil)
	s := NewSealer(0, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				r, err := k.Current()
				assert.NoError(t, err)
				aad := AAD("mer_1", "tok_"+string(rune('a'+i)))
				box, err := s.Seal(r.PublicKey(), []byte("card"), aad)
				assert.NoError(t, err)
				got, err := r.Open(box, aad)
				assert.NoError(t, err)
				assert.Equal(t, []byte("card"), got)
			}
		})
	}
	wg.Wait()
}

// BenchmarkReveal is one reveal's box work on both sides: a fresh key per
// call (before) and the keys reused within their lifetime.
func BenchmarkReveal(b *testing.B) {
	plain, aad := []byte("4242424242424242\x0012\x002031"), AAD("mer_1", "tok_1")
	b.Run("per-call keys", func(b *testing.B) {
		for b.Loop() {
			r, _ := NewRecipient()
			box, _ := Seal(r.PublicKey(), plain, aad)
			if _, err := r.Open(box, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reused keys", func(b *testing.B) {
		k, s := NewKeyring(0, nil), NewSealer(0, nil)
		for b.Loop() {
			r, _ := k.Current()
			box, _ := s.Seal(r.PublicKey(), plain, aad)
			if _, err := r.Open(box, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestRequestAAD: with the recipient key and the sealing key reused (Keyring
// and Sealer), a box bound to its request opens for that request only: not
// for another request of the same merchant and token, nor for the same
// request with any field changed on the way.
func TestRequestAAD(t *testing.T) {
	r, err := NewKeyring(0, nil).Current()
	require.NoError(t, err)
	sealer := NewSealer(0, nil)
	nonce, err := NewNonce()
	require.NoError(t, err)
	require.Len(t, nonce, NonceSize)
	req := Request{MerchantID: "mer_1", Token: "tok_1", Nonce: nonce, IncludeCVC: true, Purpose: "payment pay_1", DestinationHost: "acquirer.example"}
	plain := []byte("4242424242424242\x0012\x002031")
	box, err := sealer.Seal(r.PublicKey(), plain, RequestAAD(req))
	require.NoError(t, err)
	got, err := r.Open(box, RequestAAD(req))
	require.NoError(t, err)
	assert.Equal(t, plain, got)

	other, err := NewNonce()
	require.NoError(t, err)
	change := func(f func(*Request)) Request { c := req; f(&c); return c }
	cases := map[string]Request{
		"another request's nonce": change(func(c *Request) { c.Nonce = other }),
		"no nonce":                change(func(c *Request) { c.Nonce = nil }),
		"other token":             change(func(c *Request) { c.Token = "tok_2" }),
		"other merchant":          change(func(c *Request) { c.MerchantID = "mer_2" }),
		"without the CVC":         change(func(c *Request) { c.IncludeCVC = false }),
		"other purpose":           change(func(c *Request) { c.Purpose = "payment pay_2" }),
		"other destination":       change(func(c *Request) { c.DestinationHost = "evil.example" }),
		// Length prefixes: moving bytes between adjacent fields changes the AAD.
		"shifted field boundary": change(func(c *Request) { c.MerchantID, c.Token = "mer_1t", "ok_1" }),
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			assert.NotEqual(t, RequestAAD(req), RequestAAD(c))
			_, err := r.Open(box, RequestAAD(c))
			require.ErrorIs(t, err, ErrOpen)
		})
	}
	t.Run("the merchant-and-token binding", func(t *testing.T) {
		_, err := r.Open(box, AAD("mer_1", "tok_1"))
		require.ErrorIs(t, err, ErrOpen)
	})
}
