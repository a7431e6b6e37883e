package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/store/postgres"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
)

// TestMigrateOffWithoutDDLRights: ledgerd with OBOL_MIGRATE=off runs as a
// role that cannot create anything, once the schema was migrated by its
// owner (what obol migrate ledger runs); on an empty database it refuses to
// start, naming the command; with migrate=auto that role cannot start.
func TestMigrateOffWithoutDDLRights(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	ctx := context.Background()
	pg := testenv.SharedPostgres(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	role := "obol_app_" + hex.EncodeToString(b[:])
	// Registered first, so it runs after the database is dropped: roles
	// belong to the cluster.
	t.Cleanup(func() {
		if conn, err := pgx.Connect(ctx, pg.AdminURL); err == nil {
			_, _ = conn.Exec(ctx, `DROP ROLE IF EXISTS `+role)
			conn.Close(ctx)
		}
	})
	ownerURL := pg.NewDatabase(t, "empty", func(context.Context, string) error { return nil })
	exec := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, ownerURL)
		require.NoError(t, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	exec(`CREATE ROLE ` + role + ` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`)
	exec(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`)
	u, err := url.Parse(ownerURL)
	require.NoError(t, err)
	u.User = url.User(role)
	appURL := u.String()

	start := func(t *testing.T, mode string) (stop func(), done chan error, grpcAddr string) {
		t.Helper()
		grpcAddr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		for _, kv := range [][2]string{{"OBOL_LEDGER_POSTGRES_URL", appURL}, {"OBOL_LEDGER_TOKEN", token}, {"OBOL_LOG_FORMAT", "text"},
			{"OBOL_MIGRATE", mode}, {"OBOL_LEDGERD_GRPC_ADDR", grpcAddr}, {"OBOL_LEDGERD_HTTP_ADDR", "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))}} {
			t.Setenv(kv[0], kv[1])
		}
		cctx, cancel := context.WithCancel(ctx)
		done = make(chan error, 1)
		go func() { done <- run(cctx, nil) }()
		return cancel, done, grpcAddr
	}
	exited := func(t *testing.T, done chan error) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			require.FailNow(t, "ledgerd neither started nor exited")
			return nil
		}
	}

	t.Run("migrate off on an empty database refuses to start", func(t *testing.T) {
		stop, done, _ := start(t, "off")
		defer stop()
		err := exited(t, done)
		require.Error(t, err)
		assert.ErrorContains(t, err, "database schema is at version 0, this binary needs")
		assert.ErrorContains(t, err, "obol migrate ledger")
	})
	t.Run("migrate auto needs DDL rights", func(t *testing.T) {
		stop, done, _ := start(t, "auto")
		defer stop()
		err := exited(t, done)
		require.Error(t, err)
		assert.ErrorContains(t, err, "permission denied")
	})

	// The owner migrates (obol migrate ledger runs this) and grants the
	// role data rights only.
	require.NoError(t, postgres.MigrateURL(ctx, ownerURL))
	exec(`GRANT USAGE ON SCHEMA public TO ` + role)
	exec(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ` + role)
	exec(`GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ` + role)

	t.Run("migrate off after obol migrate serves", func(t *testing.T) {
		stop, done, grpcAddr := start(t, "off")
		client := dial(t, grpcAddr)
		require.NoError(t, testenv.WaitFor(20*time.Second, func() error {
			select {
			case err := <-done:
				require.FailNow(t, "ledgerd exited", "%v", err)
			default:
			}
			_, err := client.Verify(authed(), &ledgerv1.VerifyRequest{})
			return err
		}))
		_, err := client.RecordPayment(authed(), &ledgerv1.RecordPaymentRequest{Event: ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED,
			PaymentId: "pay_migrate_off", MerchantId: "mer_migrate_off", Currency: "USD", Amount: 1000, Acquirer: "simulator", AcquirerReference: "sim_1"})
		require.NoError(t, err, "a write as the role without DDL rights")
		rep, err := client.Verify(authed(), &ledgerv1.VerifyRequest{})
		require.NoError(t, err)
		assert.Empty(t, rep.GetProblems())
		stop()
		require.NoError(t, exited(t, done))
	})
}
