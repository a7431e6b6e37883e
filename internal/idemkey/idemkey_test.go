package idemkey

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/apierr"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name   string
		values []string
		ok     bool
		msg    string
	}{
		{"absent", nil, true, ""},
		{"order id", []string{"order-1"}, true, ""},
		{"uuid", []string{"6f1c1e6e-1d4b-4c1a-9b2f-2f3c8d6d1a77"}, true, ""},
		{"inner space", []string{"order 1"}, true, ""},
		{"max length", []string{strings.Repeat("k", MaxLen)}, true, ""},
		{"all printable but the comma", []string{"!\"#$%&'()*+-./09:;<=>?@AZ[\\]^_`az{|}~"}, true, ""},
		{"merged duplicates", []string{"a1, a2"}, false, "comma"},
		{"a comma", []string{"order,1"}, false, "comma"},
		{"twice", []string{"a", "b"}, false, "once"},
		{"twice the same", []string{"a", "a"}, false, "once"},
		{"empty", []string{""}, false, "empty"},
		{"too long", []string{strings.Repeat("k", MaxLen+1)}, false, "at most 255"},
		{"non-ascii", []string{"commande-é"}, false, "printable ASCII"},
		{"emoji", []string{"order-🙂"}, false, "printable ASCII"},
		{"control", []string{"order\x01"}, false, "printable ASCII"},
		{"tab", []string{"order\t1"}, false, "printable ASCII"},
		{"del", []string{"order\x7f"}, false, "printable ASCII"},
		{"nul", []string{"order\x00"}, false, "printable ASCII"},
		{"leading space", []string{" order"}, false, "printable ASCII"},
		{"trailing space", []string{"order "}, false, "printable ASCII"},
		{"card number", []string{"4242424242424242"}, false, "card number"},
		{"grouped card number", []string{"retry-4242.4242.4242.4242"}, false, "card number"},
		{"digits that are no card", []string{"1234567890123456"}, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := Parse(tc.values)
			if tc.ok {
				require.NoError(t, err)
				assert.Equal(t, len(tc.values) == 0, k.IsZero())
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrInvalid))
			e := apierr.From(err)
			assert.Equal(t, apierr.CodeIdempotencyKeyInvalid, e.Code)
			assert.Equal(t, "Idempotency-Key", e.Field)
			assert.Equal(t, 400, e.HTTPStatus())
			assert.Contains(t, e.Message, tc.msg)
			for _, v := range tc.values {
				if len(v) > 3 {
					assert.NotContains(t, e.Error(), v, "the error never echoes the key")
				}
			}
			assert.True(t, k.IsZero())
		})
	}
}

func TestStorage(t *testing.T) {
	k, err := Parse([]string{"order-1"})
	require.NoError(t, err)
	sk, pk := k.Storage("sk:tokenize"), k.Storage("pk:tokenize")
	assert.Len(t, sk, 64)
	assert.NotEqual(t, sk, pk, "scopes never collide")
	assert.Equal(t, sk, k.Storage("sk:tokenize"), "deterministic")
	assert.NotContains(t, sk, "order-1")
	assert.Empty(t, Key{}.Storage("sk"))
	assert.Equal(t, "idemkey(set)", k.String())
	assert.Equal(t, "idemkey(none)", Key{}.String())
}

func TestFromContext(t *testing.T) {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("idempotency-key", "a", "idempotency-key", "b"))
	_, err := FromContext(ctx)
	require.ErrorIs(t, err, ErrInvalid)
	k, err := FromContext(context.Background())
	require.NoError(t, err)
	assert.True(t, k.IsZero())
	// A binary key used to be ignored, so a retry ran twice.
	for _, md := range []metadata.MD{
		metadata.Pairs("idempotency-key-bin", "order-1"),
		metadata.Pairs("idempotency-key", "order-1", "idempotency-key-bin", "order-1"),
	} {
		_, err = FromContext(metadata.NewIncomingContext(context.Background(), md))
		require.ErrorIs(t, err, ErrInvalid)
		assert.Equal(t, "Idempotency-Key", apierr.From(err).Field)
	}
}

// FuzzParseKey: Parse never panics; what it accepts is 1 to 255 printable
// ASCII bytes without surrounding spaces or a comma, stores as 64 hex digits that do
// not contain the key, and parses again to the same key.
func FuzzParseKey(f *testing.F) {
	f.Add("order-1")
	f.Add("4242 4242 4242 4242")
	f.Add("é")
	f.Add(" x")
	f.Fuzz(func(t *testing.T, v string) {
		k, err := Parse([]string{v})
		if err != nil {
			require.ErrorIs(t, err, ErrInvalid, "untyped error")
			return
		}
		require.NotEmpty(t, v, "accepted an empty key")
		require.LessOrEqual(t, len(v), MaxLen, "accepted %q", v)
		require.Equal(t, strings.TrimSpace(v), v, "accepted surrounding space")
		for i := 0; i < len(v); i++ {
			require.True(t, v[i] >= 0x20 && v[i] <= 0x7e && v[i] != ',', "accepted byte %#x", v[i])
		}
		st := k.Storage("s")
		require.Len(t, st, 64, "storage form %q", st)
		if len(v) >= 4 {
			require.NotContains(t, st, v, "storage form holds the key")
		}
		again, err := Parse([]string{k.Raw()})
		require.NoError(t, err, "round trip")
		require.Equal(t, k, again, "round trip")
	})
}
