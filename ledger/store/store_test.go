package store

import (
	"fmt"
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

// chains builds two interleaved valid chains over the seqs 1..n (odd seqs
// in chain 0, even in chain 3, seq 5 skipped: a gap is not a problem), with
// their heads.
func chains(n int) ([]journal.Transaction, []int, []ChainHead) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	prev := map[int][]byte{0: journal.Genesis, 3: journal.Genesis}
	last := map[int]int64{}
	var txs []journal.Transaction
	var of []int
	for i := 1; i <= n; i++ {
		if i == 5 {
			continue
		}
		c := 3 * ((i + 1) % 2)
		t := journal.Transaction{
			ID:  fmt.Sprintf("tx-%d", i),
			Seq: int64(i),
			Postings: []journal.Posting{
				{AccountID: "cash", Amount: -10 * int64(i), Currency: "EUR"},
				{AccountID: "merchant", Amount: 10 * int64(i), Currency: "EUR"},
			},
			CreatedAt: at.Add(time.Duration(i) * time.Millisecond),
			PrevHash:  prev[c],
		}
		t.Hash = journal.ChainHash(prev[c], t.Seq, journal.RequestHash(&t), t.CreatedAt)
		prev[c], last[c] = t.Hash, t.Seq
		txs, of = append(txs, t), append(of, c)
	}
	return txs, of, []ChainHead{{Chain: 0, Seq: last[0], Hash: prev[0]}, {Chain: 3, Seq: last[3], Hash: prev[3]}, {Chain: 5, Hash: journal.Genesis}}
}

// TestChainsCheck: a modified, deleted, reordered or moved transaction in
// any chain, a changed head and a transaction of no chain are found;
// interleaved chains, a gap in seq and an empty chain are not problems.
func TestChainsCheck(t *testing.T) {
	type journalState struct {
		txs   []journal.Transaction
		chain []int
		heads []ChainHead
	}
	tests := []struct {
		name   string
		change func(*journalState)
		want   []string // substrings, one per expected problem
	}{
		{"intact", func(*journalState) {}, nil},
		{"description edited in chain 3", func(j *journalState) { j.txs[1].Description = "refund" },
			[]string{"seq 2 (tx-2) in chain 3: hash chain broken"}},
		{"amount edited in chain 0", func(j *journalState) {
			j.txs[2].Postings[0].Amount, j.txs[2].Postings[1].Amount = -1, 1
		}, []string{"seq 3 (tx-3) in chain 0: hash chain broken"}},
		{"middle of chain 0 deleted", func(j *journalState) {
			j.txs, j.chain = append(j.txs[:2], j.txs[3:]...), append(j.chain[:2], j.chain[3:]...) // seq 3
		}, []string{"seq 7 (tx-7) in chain 0: hash chain broken"}},
		{"last of chain 3 deleted", func(j *journalState) {
			j.txs, j.chain = j.txs[:len(j.txs)-1], j.chain[:len(j.chain)-1] // seq 8
		}, []string{"chain 3: head is seq 8 but the chain ends at seq 6"}},
		{"two of chain 0 swapped", func(j *journalState) {
			j.txs[0].Seq, j.txs[2].Seq = j.txs[2].Seq, j.txs[0].Seq // seqs 1 and 3 exchanged
			j.txs[0], j.txs[2] = j.txs[2], j.txs[0]
		}, []string{"seq 1 (tx-3) in chain 0: hash chain broken", "seq 3 (tx-1) in chain 0: hash chain broken", "seq 7 (tx-7) in chain 0: hash chain broken"}},
		{"moved from chain 0 to chain 3", func(j *journalState) { j.chain[2] = 3 }, // seq 3
			[]string{"seq 3 (tx-3) in chain 3: hash chain broken", "seq 4 (tx-4) in chain 3: hash chain broken", "seq 7 (tx-7) in chain 0: hash chain broken"}},
		{"head of chain 0 moved back", func(j *journalState) { j.heads[0].Seq, j.heads[0].Hash = j.txs[2].Seq, j.txs[2].Hash },
			[]string{"chain 0: head is seq 3 but the chain ends at seq 7"}},
		{"a transaction of no chain", func(j *journalState) { j.chain[len(j.chain)-1] = 9 },
			[]string{"seq 8 (tx-8) in chain 9: hash chain broken", "chain 3: head is seq 8 but the chain ends at seq 6", "chain 9: no head, but transactions up to seq 8 name it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var j journalState
			j.txs, j.chain, j.heads = chains(8)
			tt.change(&j)
			var rep Report
			c := NewChainsCheck()
			for i, tx := range j.txs {
				c.Check(&rep, j.chain[i], tx)
			}
			c.Heads(&rep, j.heads)
			assert.EqualValues(t, len(j.txs), rep.Transactions, "transactions counted")
			require.Len(t, rep.Problems, len(tt.want), "want problems like %q, got %q", tt.want, rep.Problems)
			for i, w := range tt.want {
				assert.Contains(t, rep.Problems[i], w, "problem %d", i)
			}
		})
	}
}
