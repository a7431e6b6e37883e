package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/vault/audit/verify"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store"
	"github.com/obolpay/obol/vault/store/postgres"
	"github.com/obolpay/obol/vault/store/sqlite"
	"github.com/obolpay/obol/vault/vaultd"
)

// openStore opens the production database when a URL is given, else the
// `obol dev` data dir.
func openStore(ctx context.Context, pgURL, dataDir string) (store.Store, error) {
	if pgURL != "" {
		return postgres.Open(ctx, pgURL, postgres.Options{MaxConns: 4})
	}
	if _, err := os.Stat(dataDir); err != nil {
		return nil, fmt.Errorf("data dir %s: %w (run `obol dev` first, or pass --postgres-url)", dataDir, err)
	}
	return sqlite.Open(ctx, filepath.Join(dataDir, vaultd.DBFile))
}

func runAudit(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "verify") {
		return errors.New("usage: obol audit list|verify")
	}
	fs := flag.NewFlagSet("obol audit "+args[0], flag.ContinueOnError)
	pgURL := fs.String("postgres-url", cli.Env("OBOL_POSTGRES_URL", ""), "vault database URL (production)")
	dataDir := fs.String("data-dir", "./.obol", "data directory of `obol dev` (without --postgres-url)")
	merchant := fs.String("merchant", "", "list: only this merchant's events")
	token := fs.String("token", "", "list: only this token's events")
	after := fs.Int64("after", 0, "list: events after this sequence number")
	limit := fs.Int("limit", 100, "list: at most this many events")
	vaultAddr := fs.String("vault-addr", cli.Env("OBOL_VAULT_ADDR", ""), "verify: also check the anchor in Vault (token in VAULT_TOKEN, e.g. an obol-auditor token)")
	anchorPath := fs.String("anchor-path", "secret/data/obol/audit-anchor", "verify: KV v2 path of the anchor")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	st, err := openStore(ctx, *pgURL, *dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	if args[0] == "list" {
		evs, err := st.ListAudit(ctx, store.AuditFilter{AfterSeq: *after, MerchantID: *merchant, Token: *token, Limit: *limit})
		if err != nil {
			return err
		}
		enc := json.NewEncoder(out)
		for _, e := range evs {
			_ = enc.Encode(map[string]any{"seq": e.Seq, "at": e.At.Format(time.RFC3339Nano), "actor": e.Actor, "action": e.Action,
				"merchant_id": e.MerchantID, "token": e.Token, "purpose": e.Purpose, "destination_host": e.DestinationHost,
				"kek_version": e.KEKVersion, "detail": e.Detail, "hash": hex.EncodeToString(e.Hash)})
		}
		return nil
	}
	var anchor *transit.AuditAnchor
	if *vaultAddr != "" {
		c, err := transit.New(transit.Config{Address: *vaultAddr, Token: cli.Env("VAULT_TOKEN", os.Getenv("OBOL_VAULT_TOKEN")), AuditAnchorPath: *anchorPath})
		if err != nil {
			return err
		}
		a, err := c.ReadAuditAnchor(ctx)
		if err != nil {
			return fmt.Errorf("read the audit anchor: %w", err)
		}
		anchor = &a
	}
	r, err := verify.Chain(ctx, st, anchor)
	if err != nil {
		return err
	}
	for _, p := range r.Problems {
		fmt.Fprintf(out, "TAMPERED: seq %d: %s\n", p.Seq, p.Reason)
	}
	if len(r.Problems) > 0 {
		return fmt.Errorf("audit trail verification failed: %d problem(s) in %d events", len(r.Problems), r.Checked)
	}
	if r.AnchorChecked {
		fmt.Fprintf(out, "anchor: event %d matches the hash anchored in Vault at %s\n", anchor.Seq, anchor.At)
	}
	fmt.Fprintf(out, "audit trail intact: %d events, head seq %d hash %s\n", r.Checked, r.HeadSeq, r.HeadHash)
	return nil
}
