package audit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func chain(n int) []Event {
	es := make([]Event, n)
	for i := range es {
		es[i] = Event{At: time.Date(2026, 11, 22, 0, 0, i, 0, time.UTC), Actor: "gateway", Action: ActionDetokenize, MerchantID: "mer_a", Token: "tok_x", DestinationHost: "acq.example", KEKVersion: 1}
	}
	Chain(0, nil, es)
	return es
}

func TestVerifierDetectsTampering(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func([]Event) []Event
		wantSeq int64 // first problem's seq, 0 for none
	}{
		{"untouched", func(es []Event) []Event { return es }, 0},
		{"field changed", func(es []Event) []Event { es[2].DestinationHost = "evil.example"; return es }, 3},
		{"time changed", func(es []Event) []Event { es[1].At = es[1].At.Add(time.Second); return es }, 2},
		{"event removed", func(es []Event) []Event { return append(es[:2], es[3:]...) }, 4},
		{"events swapped", func(es []Event) []Event { es[1], es[2] = es[2], es[1]; return es }, 3},
		{"hash rewritten to match", func(es []Event) []Event {
			es[2].Token = "tok_other"
			es[2].Hash = ComputeHash(es[2].PrevHash, es[2])
			return es // the next event's prev_hash no longer matches
		}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v Verifier
			for _, e := range tt.tamper(chain(5)) {
				v.Add(e)
			}
			if tt.wantSeq == 0 {
				require.Empty(t, v.Problems, "problems in an untouched chain")
				return
			}
			require.NotEmpty(t, v.Problems, "want the first problem at seq %d", tt.wantSeq)
			require.Equal(t, tt.wantSeq, v.Problems[0].Seq, "seq of the first problem: %v", v.Problems)
		})
	}
}

func TestHashIsUnambiguous(t *testing.T) {
	a := Event{Seq: 1, Actor: "ab", Action: "c"}
	b := Event{Seq: 1, Actor: "a", Action: "bc"}
	require.NotEqual(t, ComputeHash(Genesis, a), ComputeHash(Genesis, b), "field boundaries are not part of the hash")
}
