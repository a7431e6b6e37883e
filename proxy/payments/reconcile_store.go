package payments

import "context"

// Read-only queries for the reconciliation with the ledger (proxy/reconcile).

// PaymentsAfter lists every merchant's payments in id order, after the
// cursor id (at most limit).
func (s *Store) PaymentsAfter(ctx context.Context, after string, limit int) ([]*Payment, error) {
	return s.payments(ctx, `SELECT `+paymentCols+` FROM payments WHERE id > ? ORDER BY id LIMIT ?`, after, limit)
}

// OutboxAfter lists the queued ledger events in id order, after the cursor
// id (at most limit).
func (s *Store) OutboxAfter(ctx context.Context, after string, limit int) ([]OutboxEntry, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, payment_id, request, attempts FROM ledger_outbox WHERE id > ? ORDER BY id LIMIT ?`), after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var e OutboxEntry
		if err := rows.Scan(&e.ID, &e.PaymentID, &e.Request, &e.Attempts); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
