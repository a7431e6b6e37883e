package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/obolpay/obol/internal/migrate"
)

func newMigrateCmd() *cobra.Command {
	c := group("migrate", "Apply a daemon's PostgreSQL schema migrations (as the database's owner), so that the daemons run with --migrate=off and no DDL rights",
		newMigrateVaultCmd(), newMigrateGatewayCmd(), newMigrateLedgerCmd(), newMigrateEventsCmd())
	c.Long = c.Short + `.

Each subcommand takes its database's URL from the same flag (--postgres-url)
and variable as its daemon. Migrations are idempotent and serialised by an
advisory lock: running one twice, or beside a daemon starting with
--migrate=auto, is safe. --check changes nothing and exits 1 when the
schema is behind this binary.`
	return c
}

// schemaDB is one database's migration functions.
type schemaDB struct {
	name    string // vault, gateway, ledger, events
	env     string // its URL's variable
	migrate func(ctx context.Context, url string) error
	version func(ctx context.Context, db migrate.Querier) (have, want int, err error)
}

// run migrates (or, with check, only checks) the database at url.
func (d schemaDB) run(cmd *cobra.Command, url string, check bool) error {
	if url == "" {
		return fmt.Errorf("the %s database's URL is required (--postgres-url or %s)", d.name, d.env)
	}
	ctx, out := cmd.Context(), cmd.OutOrStdout()
	version := func() (int, int, error) {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return 0, 0, fmt.Errorf("%s database: %w", d.name, err)
		}
		defer conn.Close(ctx)
		return d.version(ctx, conn)
	}
	have, want, err := version()
	if err != nil {
		return err
	}
	if check {
		fmt.Fprintf(out, "%s database: schema at version %d, this binary needs %d\n", d.name, have, want)
		if have < want {
			return &migrate.BehindError{Have: have, Want: want, Command: "obol migrate " + d.name}
		}
		return nil
	}
	if err := d.migrate(ctx, url); err != nil {
		return fmt.Errorf("%s database: %w", d.name, err)
	}
	now, _, err := version()
	if err != nil {
		return err
	}
	if now < want {
		return errors.New(d.name + " database: migrations applied but the schema is still behind")
	}
	if now == have {
		fmt.Fprintf(out, "%s database: schema at version %d, up to date\n", d.name, now)
	} else {
		fmt.Fprintf(out, "%s database: migrated from version %d to %d\n", d.name, have, now)
	}
	return nil
}
