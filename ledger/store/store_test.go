package store

import (
	"testing"
	"time"

	"github.com/obolpay/obol/ledger/journal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chain builds n valid, chained stored transactions.
func chain(n int) []journal.Transaction {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	prev := journal.Genesis
	var txs []journal.Transaction
	for i := 1; i <= n; i++ {
		t := journal.Transaction{
			ID:  "tx-" + string(rune('a'+i)),
			Seq: int64(i),
			Postings: []journal.Posting{
				{AccountID: "cash", Amount: -100 * int64(i), Currency: "EUR"},
				{AccountID: "merchant", Amount: 100 * int64(i), Currency: "EUR"},
			},
			Description: "sale",
			CreatedAt:   at.Add(time.Duration(i) * time.Second),
			PrevHash:    prev,
		}
		t.Hash = journal.ChainHash(prev, t.Seq, journal.RequestHash(&t), t.CreatedAt)
		prev = t.Hash
		txs = append(txs, t)
	}
	return txs
}

func TestChainCheck(t *testing.T) {
	tests := []struct {
		name   string
		change func([]journal.Transaction) []journal.Transaction
		want   []string // substrings, one per expected problem
	}{
		{"intact", func(t []journal.Transaction) []journal.Transaction { return t }, nil},
		{"description edited", func(t []journal.Transaction) []journal.Transaction {
			t[1].Description = "refund"
			return t
		}, []string{"seq 2 (tx-c): hash chain broken"}},
		{"amount edited on both legs", func(t []journal.Transaction) []journal.Transaction {
			t[2].Postings[0].Amount, t[2].Postings[1].Amount = -1, 1
			return t
		}, []string{"seq 3 (tx-d): hash chain broken"}},
		{"row deleted", func(t []journal.Transaction) []journal.Transaction {
			return append(t[:1], t[2:]...)
		}, []string{"seq 3: gap after 1", "seq 3 (tx-d): hash chain broken"}},
		{"rows swapped", func(t []journal.Transaction) []journal.Transaction {
			t[1], t[2] = t[2], t[1]
			return t
		}, []string{"seq 3: gap after 1", "seq 3 (tx-d): hash chain broken", "seq 2: gap after 3", "seq 2 (tx-c): hash chain broken",
			"seq 4: gap after 2", "seq 4 (tx-e): hash chain broken"}},
		{"unbalanced leg rehashed", func(t []journal.Transaction) []journal.Transaction {
			t[0].Postings[1].Amount = 99
			t[0].Hash = journal.ChainHash(journal.Genesis, 1, journal.RequestHash(&t[0]), t[0].CreatedAt)
			return t[:1]
		}, []string{"seq 1 (tx-b): " + journal.ErrUnbalanced.Error()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			txs := tt.change(chain(4))
			var rep Report
			c := NewChainCheck()
			for _, tx := range txs {
				c.Check(&rep, tx)
			}
			assert.EqualValues(t, len(txs), rep.Transactions, "transactions counted")
			require.Len(t, rep.Problems, len(tt.want), "want problems like %q", tt.want)
			for i, w := range tt.want {
				assert.Contains(t, rep.Problems[i], w, "problem %d", i)
			}
		})
	}
}
