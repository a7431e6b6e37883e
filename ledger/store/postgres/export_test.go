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
