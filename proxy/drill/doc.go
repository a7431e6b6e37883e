// Package drill is Obol's crash-and-outage drill suite. The production
// binaries (vaultd, gatewayd, riskd, ledgerd, eventsd, acquirer-sim, and
// obol for admin verbs) are built once per test run and started as separate
// processes on real HashiCorp Vault, PostgreSQL and Redis. A bounded load
// with Idempotency-Keys tokenizes cards, then authorizes, captures and
// partly refunds a payment by each token, retrying every unanswered or 5xx
// request with the same key, while a daemon is SIGKILLed or a dependency
// stopped and started again. Afterwards the acquirer simulator, the gateway's database, the
// ledger and the vault's tokens are counted against each other, per key
// and in total, the clients' time to recover from each fault is measured
// from their own timestamps, and each drill prints one summary table.
//
// TestDrill runs the single-node drills; TestTopologyDrill runs the
// failure drills of the multi-node reference layout (deploy/topology:
// Vault Raft, PostgreSQL failover, replicated services behind HAProxy) with
// the same load and checks.
//
// The suite lives in the test files (go test ./proxy/drill/); this package
// has no API. It handles test card numbers only, and scans every daemon's
// output for them.
package drill
