package httpapi

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	gatewayv1 "github.com/obolpay/obol/proto/obol/gateway/v1"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// TestMarshalInt64AsNumbers: every 64-bit integer a REST answer holds,
// nested, repeated or wrapped, is a JSON number; other values (strings that
// look like numbers, timestamps, maps of strings) are untouched; and the
// output reads back into the same message.
func TestMarshalInt64AsNumbers(t *testing.T) {
	m := NewMarshaler()
	tests := []struct {
		name string
		msg  proto.Message
		want string
	}{
		{"payment", &gatewayv1.Payment{Id: "pay_1", Amount: 2500, AmountCaptured: 2500, AmountRefunded: 1000, Currency: "EUR",
			Metadata: map[string]string{"order": "1234"}, CreatedAt: timestamppb.New(timestamppb.Now().AsTime().Truncate(1e9)),
			Refunds: []*gatewayv1.Refund{{Id: "re_1", Amount: 600}, {Id: "re_2", Amount: 400}}},
			`{"id":"pay_1","amount":2500,"amount_captured":2500,"amount_refunded":1000,"currency":"EUR","metadata":{"order":"1234"},"refunds":[{"id":"re_1","amount":600},{"id":"re_2","amount":400}]}`},
		{"negative and large", &ledgerv1.Account{Posted: -9007199254740993, Available: 9223372036854775807},
			`{"posted":-9007199254740993,"available":9223372036854775807}`},
		{"wrapper", wrapperspb.Int64(-7), `-7`},
		{"no int64 is untouched", &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStringValue("12")}}, `{"a":"12"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := m.Marshal(tt.msg)
			require.NoError(t, err)
			var got, want any
			require.NoError(t, json.Unmarshal(b, &got), "%s", b)
			require.NoError(t, json.Unmarshal([]byte(tt.want), &want))
			if tt.name != "payment" {
				assert.JSONEq(t, tt.want, string(b))
			} else {
				p := got.(map[string]any)
				delete(p, "created_at")
				assert.Equal(t, want, p)
			}
			assert.NotContains(t, string(b), `"2500"`)
			back := tt.msg.ProtoReflect().New().Interface()
			require.NoError(t, protojson.Unmarshal(b, back), "the answer reads back")
			assert.True(t, proto.Equal(tt.msg, back))
			// The streaming encoder writes the same, one value a line.
			var buf bytes.Buffer
			require.NoError(t, m.NewEncoder(&buf).Encode(tt.msg))
			assert.JSONEq(t, string(b), buf.String())
		})
	}
}

// TestInt64sAsNumbersRefusesNonIntegers: input that is not protojson for the
// message is an error, never passed on half-rewritten.
func TestInt64sAsNumbersRefusesNonIntegers(t *testing.T) {
	md := (&gatewayv1.Payment{}).ProtoReflect().Descriptor()
	for name, in := range map[string]string{
		"not a number":   `{"amount":"12a"}`,
		"object":         `{"amount":{}}`,
		"trailing data":  `{"amount":"1"} {}`,
		"truncated":      `{"amount":"1"`,
		"list not array": `{"refunds":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Int64sAsNumbers([]byte(in), md)
			require.Error(t, err)
		})
	}
	out, err := Int64sAsNumbers([]byte(`{"amount":12,"refunds":null,"card":null}`), md)
	require.NoError(t, err)
	assert.JSONEq(t, `{"amount":12,"refunds":null,"card":null}`, string(out))
}

// TestDecodeInt64NumberOrString: requests may send 64-bit integers as JSON
// numbers or strings.
func TestDecodeInt64NumberOrString(t *testing.T) {
	m := NewMarshaler()
	for _, body := range []string{`{"amount":2500,"currency":"EUR"}`, `{"amount":"2500","currency":"EUR"}`} {
		var req gatewayv1.CreatePaymentRequest
		require.NoError(t, m.NewDecoder(bytes.NewReader([]byte(body))).Decode(&req), body)
		assert.Equal(t, int64(2500), req.GetAmount())
	}
}

// FuzzInt64sAsNumbers: for any payment, the rewritten answer is valid JSON
// that reads back into the same message, with no 64-bit integer quoted.
func FuzzInt64sAsNumbers(f *testing.F) {
	f.Add(int64(2500), int64(0), int64(-1), "pay_1", "k", "v\"<>&\u2028")
	f.Add(int64(-9223372036854775808), int64(9223372036854775807), int64(1), "", "", "")
	f.Fuzz(func(t *testing.T, amount, captured, refund int64, id, mk, mv string) {
		msg := &gatewayv1.Payment{Id: id, Amount: amount, AmountCaptured: captured, Description: mv,
			Metadata: map[string]string{mk: mv}, Refunds: []*gatewayv1.Refund{{Id: id, Amount: refund, Reason: mk}}}
		raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
		if err != nil {
			t.Skip() // not valid UTF-8: protojson refuses it before the rewrite
		}
		out, err := Int64sAsNumbers(raw, msg.ProtoReflect().Descriptor())
		require.NoError(t, err)
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(out, &m), "%s", out)
		for _, f := range []string{"amount", "amount_captured"} {
			if v, ok := m[f]; ok {
				assert.NotEqual(t, byte('"'), v[0], "%s is quoted: %s", f, out)
			}
		}
		back := &gatewayv1.Payment{}
		require.NoError(t, protojson.Unmarshal(out, back))
		assert.True(t, proto.Equal(msg, back))
	})
}

// BenchmarkMarshalPayment: the REST marshaler on a payment with refunds and
// metadata, with the int64 rewrite, against protojson alone.
func BenchmarkMarshalPayment(b *testing.B) {
	p := &gatewayv1.Payment{Id: "pay_1", Status: "partially_refunded", Amount: 2500, AmountCaptured: 2500, AmountRefunded: 1000, Fee: 103, Currency: "USD",
		Card: &gatewayv1.Card{Brand: "visa", Last4: "4242"}, Metadata: map[string]string{"order": "1234", "customer": "c_1"},
		Refunds: []*gatewayv1.Refund{{Id: "re_1", Amount: 600}, {Id: "re_2", Amount: 400}}, CreatedAt: timestamppb.Now()}
	m := NewMarshaler()
	b.Run("rest", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.Marshal(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.JSONPb.Marshal(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
