package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/ledger/journal"
	ledgerpg "github.com/obolpay/obol/ledger/store/postgres"
	ledgerv1 "github.com/obolpay/obol/proto/obol/ledger/v1"
	"github.com/obolpay/obol/vault/envelope"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/store/postgres"
)

func TestMain(m *testing.M) {
	// Subprocess tests re-run this binary as the obol command itself.
	if args, ok := os.LookupEnv(execMainEnv); ok {
		os.Args = append([]string{"obol"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	testenv.Main(m)
}

var (
	restRe = regexp.MustCompile(`\n  REST\s+http://(\S+)`)
	riskRe = regexp.MustCompile(`risk REST http://(\S+)`)
	simRe  = regexp.MustCompile(`acquirer  https://(\S+)`)
	ldgRe  = regexp.MustCompile(`ledger gRPC (\S+)`)
	payRe  = regexp.MustCompile(`payments  http://(\S+)`)
)

// TestDevAndMerchants runs `obol dev` as the README says, tokenizes through
// the printed address, stops it, and creates another merchant with
// `obol merchants create` on the same data dir.
func TestDevAndMerchants(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".obol")
	settings := filepath.Join(t.TempDir(), "ledger.yaml")
	require.NoError(t, os.WriteFile(settings, []byte("defaults: {delay_days: 0, fee_bps: 290, fee_fixed: {USD: 30}}\n"), 0o600))
	t.Setenv("OBOL_LEDGER_SETTINGS", settings)
	t.Setenv("OBOL_LEDGER_TOKEN", "")
	out := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
			"--risk-http-addr", "127.0.0.1:0", "--risk-grpc-addr", "127.0.0.1:0", "--ledger-http-addr", "127.0.0.1:0", "--ledger-grpc-addr", "127.0.0.1:0", "--events-http-addr", "127.0.0.1:0", "--events-grpc-addr", "127.0.0.1:0", "--gateway-http-addr", "127.0.0.1:0", "--gateway-grpc-addr", "127.0.0.1:0",
			"--simulator-addr", "127.0.0.1:0", "--demo-addr", "", "--log-format", "json"}, out)
	}()
	var addr string
	if err := testenv.WaitFor(20*time.Second, func() error {
		if m := restRe.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			return nil
		}
		return errors.New("no REST address printed yet")
	}); err != nil {
		cancel()
		require.NoError(t, err, "%s", out)
	}
	for _, want := range []string{"NOT FOR PRODUCTION", "sk_test_", "pk_test_", "mer_", "dev-credentials.json", "a new dev merchant was created"} {
		assert.Contains(t, out.String(), want, "the banner names it")
	}
	var creds map[string]string
	b, err := os.ReadFile(filepath.Join(dir, "dev-credentials.json"))
	require.NoError(t, err, "credentials: %v", err)
	require.NoError(t, json.Unmarshal(b, &creds), "credentials: %v", err)
	resp, body := post(t, "http://"+addr+"/v1/tokens", `{"card":{"number":"4242 4242 4242 4242","exp_month":12,"exp_year":2031,"cvc":"123"}}`, "Authorization", "Bearer "+creds["secret_key"])
	require.Equal(t, 200, resp.StatusCode, "tokenize: %d %s", resp.StatusCode, body)
	require.Contains(t, string(body), `"token":"tok_`, "tokenize: %d %s", resp.StatusCode, body)
	require.NotContains(t, string(body), "4242424242424242", "tokenize: %d %s", resp.StatusCode, body)
	// The gateway runs too: the token pays, end to end (vault, risk,
	// ledger, simulator), with capture.
	var tokResp map[string]any
	_ = json.Unmarshal(body, &tokResp)
	pm := payRe.FindStringSubmatch(out.String())
	require.NotNil(t, pm, "no payments address:\n%s", out)
	resp, body = post(t, "http://"+pm[1]+"/v1/payments", `{"token":"`+tokResp["token"].(string)+`","amount":1500,"currency":"USD","capture":true}`, "Authorization", "Bearer "+creds["secret_key"])
	require.Equal(t, 200, resp.StatusCode, "payment: %d %s", resp.StatusCode, body)
	require.Contains(t, string(body), `"status":"captured"`, "payment: %d %s", resp.StatusCode, body)
	require.NotContains(t, string(body), "4242424242424242", "payment: %d %s", resp.StatusCode, body)
	// The risk engine runs too: a dry run through its printed address.
	m := riskRe.FindStringSubmatch(out.String())
	require.NotNil(t, m, "no risk engine address or token:\n%s", out)
	require.NotEmpty(t, creds["risk_token"], "no risk engine address or token:\n%s", out)
	b, _ = os.ReadFile(filepath.Join(dir, "dev-credentials.json"))
	_ = json.Unmarshal(b, &creds)
	resp, body = post(t, "http://"+m[1]+"/v1/risk/evaluate", `{"payment":{"merchant_id":"`+creds["merchant_id"]+`","amount":2500,"currency":"USD","bin":"424242","customer_ip":"198.51.100.4"}}`, "Authorization", "Bearer "+creds["risk_token"])
	require.Equal(t, 200, resp.StatusCode, "risk dry run: %d %s", resp.StatusCode, body)
	require.Contains(t, string(body), `"action":"review"`, "risk dry run: %d %s", resp.StatusCode, body)
	require.Contains(t, string(body), "country-mismatch", "risk dry run: %d %s", resp.StatusCode, body)
	// And the acquirer simulator, over HTTPS with the dev CA.
	sm := simRe.FindStringSubmatch(out.String())
	require.NotNil(t, sm, "no simulator address:\n%s", out)
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err = hc.Post("https://"+sm[1]+"/v1/authorizations", "application/json", strings.NewReader(`{"amount":1000,"currency":"USD","card":{"number":"4000000000000002","exp_month":12,"exp_year":2031}}`))
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 402, resp.StatusCode, "simulator: %d %s", resp.StatusCode, body)
	require.Contains(t, string(body), "card_declined", "simulator: %d %s", resp.StatusCode, body)
	// /v1/forward with the dev route file: a fresh token is revealed into
	// the simulator's own format.
	resp, body = post(t, "http://"+addr+"/v1/tokens", `{"card":{"number":"5555555555554444","exp_month":11,"exp_year":2031,"cvc":"321"}}`, "Authorization", "Bearer "+creds["secret_key"])
	var tok2 map[string]any
	_ = json.Unmarshal(body, &tok2)
	t2, _ := tok2["token"].(string)
	require.Equal(t, 200, resp.StatusCode, "tokenize for forward: %d %s", resp.StatusCode, body)
	require.NotEmpty(t, t2, "tokenize for forward: %d %s", resp.StatusCode, body)
	resp, body = post(t, "http://"+pm[1]+"/v1/forward", `{"amount":1000,"currency":"USD","card":{"number":"`+t2+`","exp_month":"`+t2+`","exp_year":"`+t2+`","cvc":"`+t2+`"}}`, "Authorization", "Bearer "+creds["secret_key"], "Obol-Destination", "https://"+sm[1]+"/v1/authorizations")
	require.Equal(t, 200, resp.StatusCode, "forward: %d %s", resp.StatusCode, body)
	require.Contains(t, string(body), `"approved"`, "forward: %d %s", resp.StatusCode, body)
	require.NotContains(t, string(body), "5555555555554444", "forward: %d %s", resp.StatusCode, body)
	testDevLedger(t, dir, out.String(), creds["merchant_id"])
	cancel()
	require.NoError(t, <-done, "obol dev")
	var vout bytes.Buffer
	err = run(context.Background(), []string{"ledger", "verify", "--data-dir", dir}, &vout)
	require.NoError(t, err, "ledger verify --data-dir: %v\n%s", err, vout.String())
	require.Contains(t, vout.String(), "ledger verified", "ledger verify --data-dir: %v\n%s", err, vout.String())
	// Neither card used above is anywhere in what obol dev printed (banner
	// and logs) or left in its data dir.
	leaks := testenv.NewLeakScanner()
	leaks.AddCard("4242424242424242", "123")
	leaks.AddCard("4000000000000002", "")
	leaks.AddCard("5555555555554444", "321")
	leaks.Scan("obol dev output", []byte(out.String()))
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		leaks.Scan(filepath.Base(path), b)
		return err
	})
	require.NoError(t, err)
	hits, summary := leaks.Report()
	t.Log(summary)
	assert.Empty(t, hits, "leaks")

	var mout bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"merchants", "create", "--name", "Shop", "--origin", "https://shop.example", "--data-dir", dir}, &mout))
	var keys map[string]string
	err = json.Unmarshal(mout.Bytes(), &keys)
	require.NoError(t, err, "merchants create: %s", mout.String())
	require.True(t, strings.HasPrefix(keys["secret_key"], "sk_test_"), "merchants create: %s", mout.String())
	require.NotEqual(t, creds["merchant_id"], keys["merchant_id"], "merchants create: %s", mout.String())
	tests := []struct {
		name string
		args []string
	}{
		{"no name", []string{"merchants", "create", "--data-dir", dir}},
		{"origin with path", []string{"merchants", "create", "--name", "x", "--origin", "https://a.example/path", "--data-dir", dir}},
		{"missing data dir", []string{"merchants", "create", "--name", "x", "--data-dir", filepath.Join(dir, "nope")}},
		{"unknown command", []string{"frobnicate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard)
			require.Error(t, err, "accepted")
		})
	}
}

func TestVaultSetup(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Vault")
	}
	v := testenv.StartVault(t)
	t.Setenv("VAULT_TOKEN", v.Token)
	for i, want := range []string{"9 created", "0 created"} {
		var out bytes.Buffer
		err := run(context.Background(), []string{"vault", "setup", "--vault-addr", v.Addr}, &out)
		require.NoError(t, err, "run %d: %v\n%s", i+1, err, out.String())
		require.Contains(t, out.String(), "vault setup complete: "+want, "run %d: %s", i+1, out.String())
	}
	t.Setenv("VAULT_TOKEN", "")
	err := run(context.Background(), []string{"vault", "setup", "--vault-addr", v.Addr}, io.Discard)
	require.Error(t, err, "setup without an operator token succeeded")
}

// TestKeysStatusAndRewrap: `obol keys status` reports DEKs per KEK version
// and `obol keys rewrap` brings them all to the latest, against real Vault
// and PostgreSQL.
func TestKeysStatusAndRewrap(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs Vault and PostgreSQL")
	}
	v, pg := testenv.StartVault(t), testenv.SharedPostgres(t)
	t.Setenv("VAULT_TOKEN", v.Token)
	require.NoError(t, run(context.Background(), []string{"vault", "setup", "--vault-addr", v.Addr}, io.Discard))
	db := pg.NewDatabase(t, "vault", postgres.MigrateURL)
	st, err := postgres.Open(context.Background(), db, postgres.Options{})
	require.NoError(t, err)
	kms, err := transit.New(transit.Config{Address: v.Addr, Token: v.Token})
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		dk, err := kms.GenerateDataKey(context.Background())
		require.NoError(t, err)
		require.NoError(t, st.InsertDEK(context.Background(), envelope.DEKRecord{ID: "dek_" + strconv.Itoa(i), Wrapped: dk.Wrapped, KEKVersion: dk.KEKVersion, CreatedAt: time.Now()}))
	}
	st.Close()
	v.Do(t, "POST", "transit/keys/obol-kek/rotate", nil)
	args := func(verb string) []string {
		return []string{"keys", verb, "--vault-addr", v.Addr, "--postgres-url", db}
	}
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), args("status"), &out))
	require.Contains(t, out.String(), "latest version 2", "status before rewrap:\n%s", out.String())
	require.Contains(t, out.String(), "3 DEKs are wrapped under older KEK versions", "status before rewrap:\n%s", out.String())
	out.Reset()
	require.NoError(t, run(context.Background(), args("rewrap"), &out))
	require.Contains(t, out.String(), "rewrap complete: 3 rewrapped", "rewrap:\n%s", out.String())
	out.Reset()
	require.NoError(t, run(context.Background(), args("status"), &out))
	require.Contains(t, out.String(), "min_decryption_version can be raised to 2", "status after rewrap:\n%s", out.String())
}

func TestLedgerVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs PostgreSQL")
	}
	url := testenv.SharedPostgres(t).NewDatabase(t, "ledger", ledgerpg.MigrateURL)
	st, err := ledgerpg.Open(context.Background(), url)
	require.NoError(t, err)
	for _, id := range []string{"a", "b"} {
		_, err := st.CreateAccount(context.Background(), journal.Account{ID: id, Currency: "EUR"})
		require.NoError(t, err)
	}
	_, err = st.Post(context.Background(), journal.Transaction{ID: "t1", Postings: []journal.Posting{{AccountID: "a", Amount: -5, Currency: "EUR"}, {AccountID: "b", Amount: 5, Currency: "EUR"}}})
	require.NoError(t, err)
	st.Close()
	var out bytes.Buffer
	err = run(context.Background(), []string{"ledger", "verify", "--postgres-url", url}, &out)
	require.NoError(t, err, "verify: %v\n%s", err, out.String())
	require.Contains(t, out.String(), "1 transactions, 2 accounts", "verify: %v\n%s", err, out.String())
	db, _ := pgx.Connect(context.Background(), url)
	defer db.Close(context.Background())
	_, err = db.Exec(context.Background(), `UPDATE accounts SET posted = posted + 1 WHERE id = 'b'`)
	require.NoError(t, err)
	out.Reset()
	err = run(context.Background(), []string{"ledger", "verify", "--postgres-url", url}, &out)
	require.Error(t, err, "tampered balance not reported: %v\n%s", err, out.String())
	require.Contains(t, out.String(), "account b", "tampered balance not reported: %v\n%s", err, out.String())
}

// testDevLedger drives the dev ledger through the CLI: a captured payment
// (recorded as the gateway does), its settlement, a payout run, the batch
// CSV and the bank's confirmation.
func testDevLedger(t *testing.T, dir, banner, merchant string) {
	m := ldgRe.FindStringSubmatch(banner)
	require.NotNil(t, m, "no ledger address:\n%s", banner)
	addr := m[1]
	// The verbs find the running obol dev's ledger address (its lock
	// file) and token (its credentials) in --data-dir: no --ledger-addr.
	t.Setenv("OBOL_LEDGER_ADDR", "")
	cli := func(args ...string) (string, error) {
		var b bytes.Buffer
		err := run(context.Background(), append(args, "--data-dir", dir), &b)
		return b.String(), err
	}
	// Flags may follow positional arguments.
	cliPos := func(pos []string, args ...string) (string, error) {
		var b bytes.Buffer
		err := run(context.Background(), append(append(args, pos...), "--data-dir", dir), &b)
		return b.String(), err
	}
	b, _ := os.ReadFile(filepath.Join(dir, "dev-credentials.json"))
	var creds map[string]string
	_ = json.Unmarshal(b, &creds)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	lc := ledgerv1.NewLedgerServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+creds["ledger_token"])
	for _, ev := range []ledgerv1.PaymentEvent{ledgerv1.PaymentEvent_PAYMENT_EVENT_AUTHORIZED, ledgerv1.PaymentEvent_PAYMENT_EVENT_CAPTURED} {
		_, err := lc.RecordPayment(ctx, &ledgerv1.RecordPaymentRequest{Event: ev, PaymentId: "pay_dev1", MerchantId: merchant, Currency: "USD", Amount: 10000, Acquirer: "simulator", AcquirerReference: "sim_dev1"})
		require.NoError(t, err)
	}
	o, err := cli("ledger", "balances", "--merchant", merchant)
	require.NoError(t, err, "balances: %v\n%s", err, o)
	require.Contains(t, o, "111.06", "balances: %v\n%s", err, o)
	file := filepath.Join(t.TempDir(), "settlement.csv")
	_ = os.WriteFile(file, []byte("acquirer_reference,amount,fee,currency,settled_date\nsim_dev1,10000,290,USD,2026-11-21\nsim_other,5,0,USD,2026-11-21\n"), 0o600)
	o, err = cliPos([]string{file}, "ledger", "import-settlement", "--acquirer", "simulator")
	require.Error(t, err, "import-settlement: %v\n%s", err, o)
	require.Contains(t, o, "1 matched", "import-settlement: %v\n%s", err, o)
	require.Contains(t, o, "line 3 capture sim_other 5 USD: UNMATCHED", "import-settlement: %v\n%s", err, o)
	bad := filepath.Join(t.TempDir(), "bad.csv")
	_ = os.WriteFile(bad, []byte("acquirer_reference,amount,fee,currency,settled_date\nsim_dev1,1x,0,USD,2026-11-21\n"), 0o600)
	_, err = cliPos([]string{bad}, "ledger", "import-settlement", "--acquirer", "simulator")
	require.Error(t, err, "bad settlement file: %v", err)
	require.Contains(t, err.Error(), "line 2: amount", "bad settlement file: %v", err)
	o, err = cli("payouts", "run")
	require.NoError(t, err, "payouts run: %v\n%s", err, o)
	require.Contains(t, o, "payout po_", "payouts run: %v\n%s", err, o)
	require.Contains(t, o, "111.06", "payouts run: %v\n%s", err, o)
	id := regexp.MustCompile(`payout (po_\S+)`).FindStringSubmatch(o)[1]
	o, err = cli("payouts", "list", "--csv", "-")
	require.NoError(t, err, "payouts list: %v\n%s", err, o)
	require.Contains(t, o, id+","+merchant+",USD,11106,111.06,in_transit", "payouts list: %v\n%s", err, o)
	o, err = cliPos([]string{id, "paid"}, "payouts", "mark")
	require.NoError(t, err, "payouts mark: %v\n%s", err, o)
	require.Contains(t, o, "paid", "payouts mark: %v\n%s", err, o)
	_, err = cliPos([]string{id, "failed"}, "payouts", "mark")
	require.Error(t, err, "failed after paid: %v", err)
	require.Contains(t, err.Error(), "payout_closed", "failed after paid: %v", err)
	// A run for a future date pays nothing new, and says why.
	future := time.Now().UTC().AddDate(0, 0, 5).Format(time.DateOnly)
	o, err = cli("payouts", "run", "--date", future)
	require.NoError(t, err, "%s", o)
	assert.Contains(t, o, "note: --date "+future+" is in the future: the run releases what has matured by now (time is not simulated)")
}

// post sends a JSON body with headers (name, value pairs) and returns the
// response (body already read and closed).
func post(t *testing.T, url, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}
