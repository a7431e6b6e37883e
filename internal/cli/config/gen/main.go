// Command gen writes deploy/CONFIG.md, the table of every Obol binary's
// settings, from the config structs (run by deploy/scripts/generate.sh;
// generate.sh --check fails when the committed table is stale).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
)

func main() {
	out := flag.String("out", "deploy/CONFIG.md", "file to write")
	check := flag.Bool("check", false, "fail if the file differs instead of writing it")
	flag.Parse()
	b := render()
	if *check {
		have, err := os.ReadFile(*out)
		if err != nil || !bytes.Equal(have, b) {
			fmt.Fprintf(os.Stderr, "%s is stale: run deploy/scripts/generate.sh and commit\n", *out)
			os.Exit(1)
		}
		return
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + s + "`"
}

func render() []byte {
	var b bytes.Buffer
	b.WriteString(`# Configuration

GENERATED from the config structs in internal/cli/config by
deploy/scripts/generate.sh: do not edit (the test command checks that it is
fresh).

Every binary takes its settings from flags and OBOL_* variables: a flag
overrides its variable, which overrides the default. A value that does not
parse (e.g. OBOL_CVC_TTL=90, a duration without a unit) stops the binary
at start with a message naming the variable and the accepted form; the
value itself is never repeated. Secrets (tokens, keys) come from the
environment only and are never printed. Database and Redis URLs may be
given by flag only without a password (flags show in process listings):
put a URL with a password in its variable. An OBOL_* variable that no
binary reads is reported at start as a warning (a typo, or a setting of
another release); it is not refused, since one environment often serves
several binaries. Variables of the test harness (OBOL_TEST_*, OBOL_DRILL_*, OBOL_TOPOLOGY_*,
OBOL_VAULT_BIN) are not warned about.

One variable has one meaning in every binary that reads it, so one
environment file can hold every daemon's settings:

- a daemon's own server settings (listen addresses, server TLS, client CA,
  REST edge, reflection) carry its name: OBOL_VAULTD_HTTP_ADDR,
  OBOL_GATEWAYD_TLS_CERT, OBOL_RISKD_CLIENT_CA, OBOL_LEDGERD_GRPC_ADDR,
  OBOL_EVENTSD_AUTH_FAIL_LIMIT, ...;
- databases are named by what they hold (OBOL_VAULT_POSTGRES_URL,
  OBOL_GATEWAY_POSTGRES_URL, OBOL_LEDGER_POSTGRES_URL,
  OBOL_EVENTS_POSTGRES_URL) and Redis by its use (OBOL_CVC_REDIS_URL,
  OBOL_RISK_REDIS_URL, OBOL_RISK_STATE_REDIS_URL, OBOL_AUTHLIMIT_REDIS_URL),
  the same in the daemons and in the obol verbs that read them;
- a service's address and token are the same variables in the service and
  in its callers (OBOL_LEDGER_TOKEN in ledgerd, gatewayd and obol's ledger
  verbs). Make a service token with ` + "`openssl rand -hex 32`" + `.
- every binary and verb that talks to HashiCorp Vault takes OBOL_VAULT_ADDR,
  OBOL_VAULT_TOKEN and OBOL_VAULT_CACERT (--vault-addr, --vault-cacert),
  honouring Vault's own VAULT_ADDR, VAULT_TOKEN and VAULT_CACERT after them.

The variables these replaced (OBOL_HTTP_ADDR, OBOL_GRPC_ADDR, OBOL_TLS_CERT,
OBOL_TLS_KEY, OBOL_CLIENT_CA, OBOL_REDIS_URL, OBOL_POSTGRES_URL,
OBOL_HTTP_TLS*, OBOL_HTTP_BEHIND_TLS_PROXY, OBOL_GRPC_BEHIND_TLS_PROXY, OBOL_TRUSTED_PROXIES,
OBOL_AUTH_FAIL_*, OBOL_GRPC_REFLECTION) are no longer read: one still set
stops the binary at start, naming what to set instead. -h lists every
setting of a binary with its variables.

| binary | variable | flag | default | form | doc |
| --- | --- | --- | --- | --- | --- |
`)
	for _, bin := range config.Binaries {
		for _, s := range cli.Settings(bin.Config) {
			v := code(strings.Join(s.Env, "`, `"))
			if s.Secret {
				v += " (secret, environment only)"
			} else if s.Password {
				v += " (with a password: environment only)"
			}
			if s.ReadBy != "" {
				v += " (read by " + s.ReadBy + ")"
			}
			f := ""
			if s.Flag != "" {
				f = code("--" + s.Flag)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", bin.Name, v, f, code(cell(s.Default)), cell(s.Form), cell(s.Text()))
		}
	}
	return b.Bytes()
}
