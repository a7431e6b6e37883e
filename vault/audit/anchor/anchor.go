// Package anchor keeps the vault's audit chain anchored in HashiCorp Vault:
// vaultd writes the chain's head there whenever it moves, so that a history
// rewritten in PostgreSQL (hashes recomputed) no longer matches the anchor
// (`obol audit verify`, vault/audit/verify). PAN-free. PCI zone.
package anchor

import (
	"context"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/obolpay/obol/internal/periodic"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/keys/transit"
)

// Run writes the audit chain's head to Vault every interval when it moved,
// until ctx ends. A failed write is logged and retried on the next tick.
func Run(ctx context.Context, st interface {
	AuditHead(ctx context.Context) (audit.Event, error)
}, w interface {
	WriteAuditAnchor(ctx context.Context, a transit.AuditAnchor) error
}, every time.Duration, log *slog.Logger) {
	var anchored int64
	periodic.Run(ctx, every, func(ctx context.Context) {
		head, err := st.AuditHead(ctx)
		if err != nil || head.Seq == anchored {
			return
		}
		a := transit.AuditAnchor{Seq: head.Seq, Hash: hex.EncodeToString(head.Hash), At: time.Now().UTC().Format(time.RFC3339)}
		if err := w.WriteAuditAnchor(ctx, a); err != nil {
			if ctx.Err() == nil {
				log.Error("audit: could not write the anchor to Vault", "err", err, "seq", head.Seq)
			}
			return
		}
		anchored = head.Seq
	})
}
