package postgres

import (
	"context"

	"github.com/obolpay/obol/vault/store"
)

// FlushCreates runs one group-commit batch of token creations (idems[i]
// may be nil).
func FlushCreates(ctx context.Context, s *Store, recs []store.TokenRecord, idems []*store.IdempotencyRecord) []error {
	items := make([]createReq, len(recs))
	for i := range recs {
		items[i] = createReq{rec: recs[i], idem: idems[i]}
	}
	return s.flushCreates(ctx, items)
}
