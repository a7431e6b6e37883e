package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/vault/audit"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/reencrypt"
	"github.com/obolpay/obol/vault/keys/refingerprint"
	"github.com/obolpay/obol/vault/keys/rewrap"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
)

// keysFlags are vaultd's Vault and database settings, read the same way.
func keysFlags(fs *flag.FlagSet) (*transit.Config, *string) {
	var cfg transit.Config
	fs.StringVar(&cfg.Address, "vault-addr", cli.Env("OBOL_VAULT_ADDR", cli.Env("VAULT_ADDR", "")), "Vault address (OBOL_VAULT_ADDR)")
	fs.StringVar(&cfg.Mount, "transit-mount", cli.Env("OBOL_TRANSIT_MOUNT", "transit"), "transit mount")
	fs.StringVar(&cfg.KeyName, "transit-key", cli.Env("OBOL_TRANSIT_KEY", "obol-kek"), "KEK name")
	fs.StringVar(&cfg.RoleID, "vault-role-id", cli.Env("OBOL_VAULT_ROLE_ID", ""), "AppRole role id")
	fs.StringVar(&cfg.SecretIDFile, "vault-secret-id-file", cli.Env("OBOL_VAULT_SECRET_ID_FILE", ""), "AppRole secret id file")
	fs.StringVar(&cfg.CACertFile, "vault-cacert", cli.Env("OBOL_VAULT_CACERT", ""), "CA certificate for Vault's TLS")
	pg := fs.String("postgres-url", cli.Env("OBOL_POSTGRES_URL", ""), "vault database URL (OBOL_POSTGRES_URL)")
	return &cfg, pg
}

func openKeys(ctx context.Context, cfg *transit.Config, pg string) (*transit.Client, *postgres.Store, error) {
	cfg.Token = cli.Env("OBOL_VAULT_TOKEN", os.Getenv("VAULT_TOKEN"))
	if cfg.RoleID != "" {
		cfg.Token = ""
	}
	if pg == "" {
		return nil, nil, errors.New("--postgres-url (OBOL_POSTGRES_URL) is required")
	}
	kms, err := transit.New(*cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := postgres.Open(ctx, pg, postgres.Options{MaxConns: 4})
	if err != nil {
		return nil, nil, err
	}
	return kms, st, nil
}

func runKeys(ctx context.Context, args []string, out io.Writer) error {
	verbs := map[string]bool{"status": true, "rewrap": true, "reencrypt": true, "rotate-fingerprint": true, "refingerprint": true}
	if len(args) == 0 || !verbs[args[0]] {
		return errors.New("usage: obol keys status|rewrap|reencrypt|rotate-fingerprint|refingerprint")
	}
	fs := flag.NewFlagSet("obol keys "+args[0], flag.ContinueOnError)
	cfg, pg := keysFlags(fs)
	batch := fs.Int("batch", 100, "DEKs per transit/rewrap call (rewrap), tokens per page (reencrypt)")
	olderThan := fs.Duration("older-than", 24*time.Hour, "reencrypt: re-seal cards under DEKs created longer ago than this")
	destroy := fs.Bool("destroy", false, "reencrypt: then delete DEKs that protect nothing and are older than 25h (too old to seal or to protect a CVC)")
	perDEK := fs.Bool("deks", false, "status: list every DEK with the tokens it protects")
	if err := cli.Parse(fs, args[1:]); err != nil {
		return err
	}
	kms, st, err := openKeys(ctx, cfg, *pg)
	if err != nil {
		return err
	}
	defer st.Close()
	if args[0] == "rotate-fingerprint" {
		v, err := kms.RotateFingerprint(ctx)
		if err != nil {
			return err
		}
		if _, err := st.AppendAudit(ctx, []audit.Event{{At: time.Now(), Actor: "cli", Action: "fingerprint_rotate", Detail: fmt.Sprintf("version=%d", v)}}); err != nil {
			return fmt.Errorf("fingerprint secret rotated to v%d, but recording it in the audit trail failed: %w", v, err)
		}
		fmt.Fprintf(out, "fingerprint secret rotated to version %d. vaultd picks it up within its KEK check interval and rewrites older fingerprints in the background (or run `obol keys refingerprint`); until then, lookups also try version %d.\n", v, v-1)
		return nil
	}
	if args[0] == "refingerprint" {
		res, err := refingerprint.Run(ctx, envelope.New(kms, st, envelope.Config{}), st, *batch)
		if err != nil {
			return fmt.Errorf("%w (the job is resumable: run it again)", err)
		}
		if res.Rewritten > 0 {
			if _, err := st.AppendAudit(ctx, []audit.Event{{At: time.Now(), Actor: "cli", Action: audit.ActionRefingerprint, Detail: fmt.Sprintf("version=%d rewritten=%d skipped=%d", res.Version, res.Rewritten, res.Skipped)}}); err != nil {
				return fmt.Errorf("refingerprint done, but recording it in the audit trail failed: %w", err)
			}
		}
		fmt.Fprintf(out, "refingerprint complete: %d tokens rewritten to fingerprint version %d, %d changed meanwhile\n", res.Rewritten, res.Version, res.Skipped)
		return nil
	}
	if args[0] == "reencrypt" {
		if *olderThan <= 0 {
			return errors.New("--older-than must be positive")
		}
		env := envelope.New(kms, st, envelope.Config{})
		res, err := reencrypt.Run(ctx, env, st, reencrypt.Options{OlderThan: *olderThan, Destroy: *destroy, Batch: *batch}, func(r reencrypt.Result) {
			fmt.Fprintf(out, "re-encrypted %d cards (%s)\n", r.Reencrypted, r.Elapsed.Round(time.Millisecond))
		})
		if err != nil {
			return fmt.Errorf("%w (the job is resumable: run it again)", err)
		}
		if _, err := st.AppendAudit(ctx, []audit.Event{{At: time.Now(), Actor: "cli", Action: audit.ActionReencrypt, Detail: fmt.Sprintf("reencrypted=%d skipped=%d destroyed_deks=%d", res.Reencrypted, res.Skipped, res.Destroyed)}}); err != nil {
			return fmt.Errorf("re-encryption done, but recording it in the audit trail failed: %w", err)
		}
		fmt.Fprintf(out, "reencrypt complete: %d cards re-encrypted, %d changed meanwhile, %d unused DEKs destroyed\n", res.Reencrypted, res.Skipped, res.Destroyed)
		return nil
	}
	if args[0] == "rewrap" {
		res, err := rewrap.Run(ctx, kms, st, *batch, nil, func(r rewrap.Result) {
			fmt.Fprintf(out, "rewrapped %d DEKs to KEK version %d (%s)\n", r.Rewrapped, r.TargetVersion, r.Elapsed.Round(time.Millisecond))
		})
		if err != nil {
			return fmt.Errorf("%w (the job is resumable: run it again)", err)
		}
		rate := 0.0
		if res.Elapsed > 0 {
			rate = float64(res.Rewrapped) / res.Elapsed.Seconds()
		}
		if res.Rewrapped > 0 {
			if _, err := st.AppendAudit(ctx, []audit.Event{{At: time.Now(), Actor: "cli", Action: audit.ActionRewrap, KEKVersion: res.TargetVersion, Detail: fmt.Sprintf("rewrapped=%d skipped=%d", res.Rewrapped, res.Skipped)}}); err != nil {
				return fmt.Errorf("rewrap done, but recording it in the audit trail failed: %w", err)
			}
		}
		fmt.Fprintf(out, "rewrap complete: %d rewrapped, %d already current (concurrent job), KEK version %d, %.0f DEKs/s\n", res.Rewrapped, res.Skipped, res.TargetVersion, rate)
		return nil
	}
	ki, err := kms.ReadKey(ctx)
	if err != nil {
		return fmt.Errorf("read KEK: %w", err)
	}
	stats, err := st.KeyStats(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "KEK %s/keys/%s: latest version %d, min_decryption_version %d, min_encryption_version %d, auto_rotate_period %s, exportable %v, deletion allowed %v\n\n",
		kms.Mount(), kms.KeyName(), ki.LatestVersion, ki.MinDecryptionVersion, ki.MinEncryptionVersion, time.Duration(ki.AutoRotatePeriod)*time.Second, ki.Exportable, ki.DeletionAllowed)
	fmt.Fprintf(out, "%-12s %10s %12s\n", "KEK version", "DEKs", "tokens")
	var behind int64
	for _, s := range stats {
		fmt.Fprintf(out, "%-12d %10d %12d\n", s.KEKVersion, s.DEKs, s.Tokens)
		if s.KEKVersion < ki.LatestVersion {
			behind += s.DEKs
		}
	}
	if *perDEK {
		deks, err := st.DEKStats(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\n%-28s %-12s %-22s %8s\n", "DEK", "KEK version", "created", "tokens")
		for _, d := range deks {
			fmt.Fprintf(out, "%-28s %-12d %-22s %8d\n", d.ID, d.KEKVersion, d.CreatedAt.UTC().Format(time.RFC3339), d.Tokens)
		}
	}
	switch {
	case behind > 0:
		fmt.Fprintf(out, "\n%d DEKs are wrapped under older KEK versions: run `obol keys rewrap` (vaultd does it automatically) before raising min_decryption_version.\n", behind)
	default:
		fmt.Fprintf(out, "\nEvery DEK is wrapped under the latest KEK version: min_decryption_version can be raised to %d.\n", ki.LatestVersion)
	}
	return nil
}
