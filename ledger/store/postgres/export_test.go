package postgres

import "github.com/obolpay/obol/ledger/journal"

// Migrations are the embedded migrations (a test builds an older schema).
var Migrations = migrations

// Split is split over transactions.
func Split(txs []journal.Transaction, n int) [][]int {
	reqs := make([]*postReq, len(txs))
	for i := range txs {
		reqs[i] = &postReq{tx: txs[i]}
	}
	return split(reqs, n)
}

// AfterRead sets a hook run between a batch's two round trips.
func (s *Store) AfterRead(f func(lock bool)) { s.afterRead = f }
