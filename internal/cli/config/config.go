// Package config holds the settings of every Obol binary, one struct per
// binary (obol's verbs: one per group of verbs), each field tagged with
// its variable, flag, default, accepted form and doc (see internal/cli for
// the tags and the strict loader). deploy/CONFIG.md is generated from
// Binaries (go run ./internal/cli/config/gen), and Known is the set the
// start-up warning about unknown OBOL_* variables checks against.
package config

import (
	"context"
	"crypto/tls"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/obolpay/obol/internal/cli"
)

// Common are the settings every daemon has besides the HTTP edge; embed it
// with envprefix naming the daemon (its reflection switch is its own).
type Common struct {
	LogFormat  string `env:"OBOL_LOG_FORMAT" flag:"log-format" default:"json" oneof:"json|text" doc:"log line format"`
	Reflection bool   `env:"OBOL_*_GRPC_REFLECTION" was:"OBOL_GRPC_REFLECTION" flag:"grpc-reflection" doc:"enable gRPC reflection"`
	Tracing
}

// Start sets a daemon up to run: its logger in the configured format, a
// warning naming unknown OBOL_* variables, and tracing as service (defer
// stop).
func (c Common) Start(ctx context.Context, service string) (log *slog.Logger, stop func(), err error) {
	log = cli.Logger(c.LogFormat)
	WarnUnknown(log)
	stop, err = cli.Tracing(ctx, service, log)
	return log, stop, err
}

// Tracing is read and checked by internal/telemetry (a bad value stops the
// start with telemetry.ErrConfig); it is here to be documented.
type Tracing struct {
	Mode string `env:"OBOL_TRACING" readby:"internal/telemetry" form:"off or otlp; empty: on exactly when OTEL_EXPORTER_OTLP_ENDPOINT is set" doc:"OpenTelemetry tracing over OTLP/HTTP; the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...) also apply"`
}

// ServerTLS is a daemon's gRPC server certificate; embed it with
// envprefix naming the daemon (OBOL_GATEWAYD_TLS_CERT, ...).
type ServerTLS struct {
	TLSCert string `env:"OBOL_*_TLS_CERT" was:"OBOL_TLS_CERT" flag:"tls-cert" form:"a PEM file" doc:"gRPC server certificate (plaintext gRPC without it: development only)"`
	TLSKey  string `env:"OBOL_*_TLS_KEY" was:"OBOL_TLS_KEY" flag:"tls-key" form:"a PEM file" doc:"gRPC server key"`
}

// GRPCTLS loads the gRPC server certificate (with clientCA, clients must
// present a certificate it signed); without one it warns that gRPC is
// served in plaintext and returns nil. prefix is the daemon's variable
// prefix (cli.DaemonVars).
func (t ServerTLS) GRPCTLS(log *slog.Logger, prefix, clientCA string) (*tls.Config, error) {
	if t.TLSCert == "" {
		log.Warn("gRPC is served without TLS (set " + prefix + "TLS_CERT and " + prefix + "TLS_KEY in production)")
		return nil, nil
	}
	return cli.ServerTLS(t.TLSCert, t.TLSKey, clientCA)
}

// The HashiCorp Vault connection settings (address, token, CA) have the
// same variables, flags and docs in every binary and verb that talks to
// Vault (vaultd, obol keys, obol vault setup, obol audit verify), with
// Vault's own VAULT_ADDR, VAULT_TOKEN and VAULT_CACERT honoured after
// Obol's; TestOneMeaningPerVariable holds them to it.

// Vault is how vaultd and obol's key verbs reach HashiCorp Vault.
type Vault struct {
	Address      string `env:"OBOL_VAULT_ADDR,VAULT_ADDR" flag:"vault-addr" form:"a URL" doc:"HashiCorp Vault address"`
	Token        string `env:"OBOL_VAULT_TOKEN,VAULT_TOKEN" secret:"true" doc:"the Vault token this binary authenticates with" note:"ignored with AppRole, a token file or Kubernetes auth"`
	CACertFile   string `env:"OBOL_VAULT_CACERT,VAULT_CACERT" flag:"vault-cacert" form:"a PEM file" doc:"CA certificate of Vault's TLS (default: the system's roots)"`
	RoleID       string `env:"OBOL_VAULT_ROLE_ID" flag:"vault-role-id" doc:"AppRole role id"`
	SecretIDFile string `env:"OBOL_VAULT_SECRET_ID_FILE" flag:"vault-secret-id-file" form:"a file" doc:"file holding the AppRole secret id"`
	Mount        string `env:"OBOL_TRANSIT_MOUNT" flag:"transit-mount" default:"transit" doc:"transit mount"`
	KeyName      string `env:"OBOL_TRANSIT_KEY" flag:"transit-key" default:"obol-kek" doc:"transit key used as KEK"`
}

// Vaultd is cmd/vaultd's configuration.
type Vaultd struct {
	Vault
	Namespace          string `env:"OBOL_VAULT_NAMESPACE" flag:"vault-namespace" doc:"Vault namespace"`
	TokenFile          string `env:"OBOL_VAULT_TOKEN_FILE" flag:"vault-token-file" form:"a file" doc:"file holding a Vault token kept fresh by Vault Agent"`
	AppRoleMount       string `env:"OBOL_VAULT_APPROLE_MOUNT" flag:"vault-approle-mount" default:"approle" doc:"AppRole auth mount"`
	KubernetesRole     string `env:"OBOL_VAULT_K8S_ROLE" flag:"vault-k8s-role" doc:"Vault Kubernetes auth role"`
	KubernetesMount    string `env:"OBOL_VAULT_K8S_MOUNT" flag:"vault-k8s-mount" default:"kubernetes" doc:"Vault Kubernetes auth mount"`
	KubernetesJWTFile  string `env:"OBOL_VAULT_K8S_JWT_FILE" flag:"vault-k8s-jwt-file" default:"/var/run/secrets/kubernetes.io/serviceaccount/token" form:"a file" doc:"service account token file for Kubernetes auth"`
	FingerprintPath    string `env:"OBOL_FINGERPRINT_PATH" flag:"fingerprint-path" default:"secret/data/obol/fingerprint" doc:"KV v2 path of the fingerprint secret"`
	AuditAnchorPath    string `env:"OBOL_AUDIT_ANCHOR_PATH" flag:"audit-anchor-path" default:"secret/data/obol/audit-anchor" doc:"KV v2 path of the audit anchor"`
	PostgresURL        string `env:"OBOL_VAULT_POSTGRES_URL" was:"OBOL_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the vault's database (cards, tokens, merchants, audit trail)" note:"required"`
	RedisURL           string `env:"OBOL_CVC_REDIS_URL" was:"OBOL_REDIS_URL" flag:"redis-url" secret:"password" form:"a redis://, rediss:// or unix:// URL (one node) or a redis+cluster:// / rediss+cluster:// URL (Redis Cluster: redis+cluster://host1:port1?addr=host2:port2&addr=host3:port3; database 0 only; replica reads are refused)" doc:"Redis holding the CVCs (in memory only, with a TTL); on a Redis Cluster each CVC, and its deletion when taken, is acknowledged by a replica before the call returns, so a failover can neither lose it nor hand it out twice" note:"required"`
	AuthLimitRedisURL  string `env:"OBOL_AUTHLIMIT_REDIS_URL" flag:"authlimit-redis-url" secret:"password" form:"a redis://, rediss:// or unix:// URL (one node) or a redis+cluster:// / rediss+cluster:// URL (Redis Cluster: redis+cluster://host1:port1?addr=host2:port2&addr=host3:port3; database 0 only; replica reads are refused)" doc:"Redis for the failed-authentication counters shared by every replica" note:"default: the CVC Redis"`
	GRPCAddr           string `env:"OBOL_VAULTD_GRPC_ADDR" was:"OBOL_GRPC_ADDR" flag:"grpc-addr" default:"127.0.0.1:9090" form:"host:port" doc:"vaultd's gRPC listen address (always TLS)"`
	HTTPAddr           string `env:"OBOL_VAULTD_HTTP_ADDR" was:"OBOL_HTTP_ADDR" flag:"http-addr" default:"127.0.0.1:8080" form:"host:port" doc:"vaultd's REST listen address"`
	ServerTLS          `envprefix:"VAULTD"`
	ClientCA           string        `env:"OBOL_VAULTD_CLIENT_CA" was:"OBOL_CLIENT_CA" flag:"client-ca" form:"a PEM file" doc:"CA of the services' client certificates (the gateway's among them; required)"`
	GatewayIdentity    string        `env:"OBOL_GATEWAY_IDENTITY" flag:"gateway-identity" default:"spiffe://obol.local/gatewayd" form:"a URI" doc:"URI SAN of the gateway's client certificate (the only identity cards are revealed to)"`
	RequireNonce       bool          `env:"OBOL_VAULTD_REQUIRE_REQUEST_NONCE" flag:"require-request-nonce" doc:"refuse a reveal whose request carries no request_nonce (a gateway older than request-bound boxes), before its CVC is taken, instead of sealing the card bound to merchant and token only" note:"set it once every gateway is upgraded"`
	CVCTTL             time.Duration `env:"OBOL_CVC_TTL" flag:"cvc-ttl" positive:"true" doc:"how long a CVC is held (default 1h, max 24h)"`
	CVCClientSecretTTL time.Duration `env:"OBOL_CVC_CLIENT_SECRET_TTL" flag:"cvc-client-secret-ttl" positive:"true" doc:"how long a CVC client secret stays usable (default 10m, max 1h)"`
	DEKMaxAge          time.Duration `env:"OBOL_DEK_MAX_AGE" flag:"dek-max-age" default:"1h" positive:"true" doc:"retire a data key after this long"`
	DEKMaxUses         int64         `env:"OBOL_DEK_MAX_USES" flag:"dek-max-uses" default:"1000000" positive:"true" doc:"retire a data key after this many encryptions"`
	KeyCheckEvery      time.Duration `env:"OBOL_KEY_CHECK_INTERVAL" flag:"key-check-interval" default:"1s" positive:"true" doc:"how often Vault's seal status is checked"`
	KEKCheckEvery      time.Duration `env:"OBOL_KEK_CHECK_INTERVAL" flag:"kek-check-interval" default:"10s" positive:"true" doc:"how often the KEK version is checked for rotations"`
	AuditAnchorEvery   time.Duration `env:"OBOL_AUDIT_ANCHOR_INTERVAL" flag:"audit-anchor-interval" default:"10s" positive:"true" doc:"how often the audit chain's head is anchored in Vault"`
	ReencryptOlderThan time.Duration `env:"OBOL_REENCRYPT_OLDER_THAN" flag:"reencrypt-older-than" doc:"re-seal cards under DEKs older than this in the background and destroy unused DEKs (0: off)"`
	ReencryptEvery     time.Duration `env:"OBOL_REENCRYPT_INTERVAL" flag:"reencrypt-interval" default:"1h" positive:"true" doc:"how often the re-encryption job runs"`
	NoAutoRewrap       bool          `env:"OBOL_NO_AUTO_REWRAP" flag:"no-auto-rewrap" doc:"do not rewrap stored DEKs automatically after a KEK rotation"`
	Migration
	Common         `envprefix:"VAULTD"`
	cli.EdgeConfig `envprefix:"VAULTD"`
}

// Gatewayd is cmd/gatewayd's configuration.
type Gatewayd struct {
	PostgresURL       string            `env:"OBOL_GATEWAY_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the gateway's database (payments, refunds, its ledger and event outboxes)" note:"required"`
	RedisURL          string            `env:"OBOL_AUTHLIMIT_REDIS_URL" was:"OBOL_REDIS_URL" flag:"redis-url" secret:"password" form:"a redis://, rediss:// or unix:// URL (one node) or a redis+cluster:// / rediss+cluster:// URL (Redis Cluster: redis+cluster://host1:port1?addr=host2:port2&addr=host3:port3; database 0 only; replica reads are refused)" doc:"Redis for the failed-authentication counters shared by every replica" note:"without it each replica counts alone"`
	GRPCAddr          string            `env:"OBOL_GATEWAYD_GRPC_ADDR" was:"OBOL_GRPC_ADDR" flag:"grpc-addr" default:"127.0.0.1:9093" form:"host:port" doc:"gatewayd's gRPC listen address"`
	HTTPAddr          string            `env:"OBOL_GATEWAYD_HTTP_ADDR" was:"OBOL_HTTP_ADDR" flag:"http-addr" default:"127.0.0.1:8083" form:"host:port" doc:"gatewayd's REST listen address"`
	VaultAddr         string            `env:"OBOL_VAULT_GRPC_ADDR" flag:"vault-grpc-addr" default:"127.0.0.1:9090" form:"host:port" doc:"vaultd's gRPC address (mTLS)"`
	RiskAddr          string            `env:"OBOL_RISK_ADDR" flag:"risk-addr" default:"127.0.0.1:9091" form:"host:port" doc:"riskd's gRPC address"`
	RiskToken         string            `env:"OBOL_RISK_TOKEN" secret:"true" form:"a random string: make one with openssl rand -hex 32 and give the same value to the service and its callers" doc:"riskd's service token: riskd accepts callers presenting it, the gateway presents it"`
	LedgerAddr        string            `env:"OBOL_LEDGER_ADDR" flag:"ledger-addr" default:"127.0.0.1:9092" form:"host:port" doc:"ledgerd's gRPC address"`
	LedgerToken       string            `env:"OBOL_LEDGER_TOKEN" secret:"true" form:"a random string: make one with openssl rand -hex 32 and give the same value to the service and its callers" doc:"ledgerd's service token: ledgerd accepts callers presenting it, the gateway and obol's ledger verbs present it"`
	EventsAddr        string            `env:"OBOL_EVENTS_ADDR" flag:"events-addr" form:"host:port" doc:"eventsd's gRPC address" note:"the gateway serves the merchants' events and webhook endpoints by forwarding to it, and relays its outbox of payment and refund events to it (without it: those calls answer unavailable and the events wait in the outbox)"`
	EventsToken       string            `env:"OBOL_EVENTS_TOKEN" secret:"true" form:"a random string: make one with openssl rand -hex 32 and give the same value to the service and its callers" doc:"eventsd's service token: eventsd accepts callers presenting it, the gateway and ledgerd present it" note:"required with --events-addr"`
	SimulatorURL      string            `env:"OBOL_SIMULATOR_URL" flag:"simulator-url" form:"an https:// URL" doc:"acquirer simulator base URL"`
	StripeURL         string            `env:"OBOL_STRIPE_URL" flag:"stripe-url" form:"an https:// URL" doc:"Stripe-compatible API base URL (default https://api.stripe.com when OBOL_STRIPE_SECRET_KEY is set)"`
	StripeSecretKey   string            `env:"OBOL_STRIPE_SECRET_KEY" secret:"true" doc:"Stripe secret key (turns the stripe connector on)"`
	DefaultAcquirer   string            `env:"OBOL_DEFAULT_ACQUIRER" flag:"default-acquirer" doc:"connector for payments that name none (default: simulator, or stripe when only it is configured)"`
	MerchantAcquirers map[string]string `env:"OBOL_MERCHANT_ACQUIRERS" flag:"merchant-acquirers" form:"merchant=connector pairs, comma-separated, e.g. mer_a=stripe,mer_b=simulator" doc:"per-merchant connectors"`
	RoutesFile        string            `env:"OBOL_GATEWAY_ROUTES" flag:"routes" form:"a YAML file" doc:"route file for POST /v1/forward (hot-reloaded); /v1/forward is off without it"`
	UpstreamCA        string            `env:"OBOL_UPSTREAM_CA" flag:"upstream-ca" form:"a PEM file" doc:"extra CA certificates trusted for /v1/forward upstreams, besides the system's"`
	ForwardTimeout    time.Duration     `env:"OBOL_FORWARD_TIMEOUT" flag:"forward-timeout" positive:"true" doc:"upstream call timeout for /v1/forward (default 20s)"`
	AcquirerTimeout   time.Duration     `env:"OBOL_ACQUIRER_TIMEOUT" flag:"acquirer-timeout" default:"10s" positive:"true" doc:"acquirer call timeout"`
	SweepInterval     time.Duration     `env:"OBOL_SWEEP_INTERVAL" flag:"sweep-interval" default:"10s" positive:"true" doc:"how often the ledger outbox is delivered and abandoned payments are resolved"`
	ProcessingTimeout time.Duration     `env:"OBOL_PROCESSING_TIMEOUT" flag:"processing-timeout" positive:"true" doc:"age at which a payment still processing counts as abandoned and is reversed (default 2m; longer than any request)"`
	GatewayCert       string            `env:"OBOL_GATEWAY_CERT" flag:"gateway-cert" form:"a PEM file" doc:"the gateway's client certificate for vaultd (mTLS; required)"`
	GatewayKey        string            `env:"OBOL_GATEWAY_KEY" flag:"gateway-key" form:"a PEM file" doc:"its key (required)"`
	CA                string            `env:"OBOL_CA" flag:"ca" form:"a PEM file" doc:"CA of vaultd's (and the other services') certificates (required)"`
	TLSServices       bool              `env:"OBOL_TLS_SERVICES" flag:"tls-services" doc:"use TLS (with --ca) to riskd, ledgerd and eventsd too"`
	ServerTLS         `envprefix:"GATEWAYD"`
	Migration
	Common         `envprefix:"GATEWAYD"`
	cli.EdgeConfig `envprefix:"GATEWAYD"`
}

// Riskd is cmd/riskd's configuration.
type Riskd struct {
	RedisURL          string            `env:"OBOL_RISK_REDIS_URL" was:"OBOL_REDIS_URL" flag:"redis-url" secret:"password" form:"a redis://, rediss:// or unix:// URL (one node) or a redis+cluster:// / rediss+cluster:// URL (Redis Cluster: redis+cluster://host1:port1?addr=host2:port2&addr=host3:port3; database 0 only; replica reads are refused)" doc:"Redis for riskd's velocity counters" note:"required"`
	StateRedisURL     string            `env:"OBOL_RISK_STATE_REDIS_URL" flag:"state-redis-url" secret:"password" form:"a redis://, rediss:// or unix:// URL (one node) or a redis+cluster:// / rediss+cluster:// URL (Redis Cluster: redis+cluster://host1:port1?addr=host2:port2&addr=host3:port3; database 0 only; replica reads are refused)" doc:"Redis with persistence for riskd's rule sets and lists" note:"default: OBOL_RISK_REDIS_URL"`
	GRPCAddr          string            `env:"OBOL_RISKD_GRPC_ADDR" was:"OBOL_GRPC_ADDR" flag:"grpc-addr" default:"127.0.0.1:9091" form:"host:port" doc:"riskd's gRPC listen address"`
	HTTPAddr          string            `env:"OBOL_RISKD_HTTP_ADDR" was:"OBOL_HTTP_ADDR" flag:"http-addr" default:"127.0.0.1:8081" form:"host:port" doc:"riskd's REST listen address"`
	Token             string            `env:"OBOL_RISK_TOKEN" secret:"true" form:"a random string: make one with openssl rand -hex 32 and give the same value to the service and its callers" doc:"riskd's service token: riskd accepts callers presenting it, the gateway presents it" note:"required"`
	KeyPrefix         string            `env:"OBOL_RISK_KEY_PREFIX" flag:"key-prefix" default:"obol:risk:" doc:"prefix of every Redis key (to share a Redis between deployments); on a Redis Cluster it must contain a hash tag, e.g. obol:risk:{risk}: (riskd's scripts need all its keys in one slot), or riskd refuses to start"`
	RulesFile         string            `env:"OBOL_RISK_RULES" flag:"rules" form:"a YAML file" doc:"rule set file, hot-reloaded (default: the stored active set, else the shipped defaults)"`
	BINTable          string            `env:"OBOL_RISK_BIN_TABLE" flag:"bin-table" form:"a CSV file" doc:"BIN table (default: the shipped sample)"`
	IPTable           string            `env:"OBOL_RISK_IP_TABLE" flag:"ip-table" form:"a CSV file" doc:"IP-to-country table (default: the shipped sample)"`
	DefaultFallback   string            `env:"OBOL_RISK_FALLBACK" flag:"fallback" default:"review" oneof:"allow|review|challenge|block" doc:"action when Redis is unavailable"`
	MerchantFallbacks map[string]string `env:"OBOL_RISK_MERCHANT_FALLBACKS" flag:"merchant-fallbacks" form:"merchant=action pairs, comma-separated, e.g. mer_a=block,mer_b=review" doc:"per-merchant fallback actions"`
	ServerTLS         `envprefix:"RISKD"`
	ClientCA          string `env:"OBOL_RISKD_CLIENT_CA" was:"OBOL_CLIENT_CA" flag:"client-ca" form:"a PEM file" doc:"CA of client certificates; when set, riskd's gRPC callers must present a certificate it signed"`
	Common            `envprefix:"RISKD"`
	cli.EdgeConfig    `envprefix:"RISKD"`
}

// Ledgerd is cmd/ledgerd's configuration.
type Ledgerd struct {
	PostgresURL string `env:"OBOL_LEDGER_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the ledger's database (journal, balances, payouts)" note:"required"`
	GRPCAddr    string `env:"OBOL_LEDGERD_GRPC_ADDR" was:"OBOL_GRPC_ADDR" flag:"grpc-addr" default:"127.0.0.1:9092" form:"host:port" doc:"ledgerd's gRPC listen address"`
	HTTPAddr    string `env:"OBOL_LEDGERD_HTTP_ADDR" was:"OBOL_HTTP_ADDR" flag:"http-addr" default:"127.0.0.1:8082" form:"host:port" doc:"ledgerd's REST listen address"`
	Token       string `env:"OBOL_LEDGER_TOKEN" secret:"true" form:"a random string: make one with openssl rand -hex 32 and give the same value to the service and its callers" doc:"ledgerd's service token: ledgerd accepts callers presenting it, the gateway and obol's ledger verbs present it" note:"required"`
	Settings    string `env:"OBOL_LEDGER_SETTINGS" flag:"settings" form:"a YAML file" doc:"the ledger's merchant fees and payout terms (default: 2.9% + 30, daily, T+2)"`
	ServerTLS   `envprefix:"LEDGERD"`
	ClientCA    string `env:"OBOL_LEDGERD_CLIENT_CA" was:"OBOL_CLIENT_CA" flag:"client-ca" form:"a PEM file" doc:"CA of client certificates; when set, ledgerd's gRPC callers (the gateway, obol's ledger verbs with --client-cert) must present a certificate it signed"`
	EventsAddr  string `env:"OBOL_EVENTS_ADDR" flag:"events-addr" form:"host:port" doc:"eventsd's gRPC address" note:"the ledger's events (disputes, payouts, settlements) are relayed there; without it they wait in the outbox"`
	EventsToken string `env:"OBOL_EVENTS_TOKEN" secret:"true" form:"a random string: make one with openssl rand -hex 32 and give the same value to the service and its callers" doc:"eventsd's service token: eventsd accepts callers presenting it, the gateway and ledgerd present it" note:"required with --events-addr"`
	EventsCA    string `env:"OBOL_EVENTS_CA" flag:"events-ca" form:"a PEM file" doc:"CA of eventsd's certificate (plaintext to eventsd without it: development only)"`
	Migration
	Common         `envprefix:"LEDGERD"`
	cli.EdgeConfig `envprefix:"LEDGERD"`
}

// Eventsd is cmd/eventsd's configuration.
type Eventsd struct {
	PostgresURL        string        `env:"OBOL_EVENTS_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the events database (events, webhook endpoints, deliveries)" note:"required"`
	GRPCAddr           string        `env:"OBOL_EVENTSD_GRPC_ADDR" was:"OBOL_GRPC_ADDR" flag:"grpc-addr" default:"127.0.0.1:9094" form:"host:port" doc:"eventsd's gRPC listen address (EventLogService: the gateway and the producers)"`
	HTTPAddr           string        `env:"OBOL_EVENTSD_HTTP_ADDR" was:"OBOL_HTTP_ADDR" flag:"http-addr" default:"127.0.0.1:8084" form:"host:port" doc:"eventsd's health and metrics listen address"`
	Token              string        `env:"OBOL_EVENTS_TOKEN" secret:"true" form:"a random string: make one with openssl rand -hex 32 and give the same value to the service and its callers" doc:"eventsd's service token: eventsd accepts callers presenting it, the gateway and ledgerd present it" note:"required"`
	SealKey            string        `env:"OBOL_EVENTS_SEAL_KEY" secret:"true" form:"32 bytes in base64 (openssl rand -base64 32)" doc:"seals the webhook endpoints' signing secrets at rest (required; keep it: without it the secrets do not open)"`
	WebhookAllowCIDRs  string        `env:"OBOL_WEBHOOK_ALLOW_CIDRS" flag:"webhook-allow-cidrs" form:"CIDR prefixes, comma-separated, e.g. 10.1.0.0/16" doc:"non-public ranges webhooks may reach (by default only public addresses: no loopback, private, link-local, CGNAT, multicast or cloud metadata)"`
	WebhookCA          string        `env:"OBOL_WEBHOOK_CA" flag:"webhook-ca" form:"a PEM file" doc:"CA certificates trusted for webhook endpoints besides the system roots"`
	WebhookTimeout     time.Duration `env:"OBOL_WEBHOOK_TIMEOUT" flag:"webhook-timeout" default:"10s" positive:"true" doc:"timeout of one webhook attempt (at most 30s)"`
	WebhookConcurrency int           `env:"OBOL_WEBHOOK_CONCURRENCY" flag:"webhook-concurrency" default:"64" positive:"true" doc:"webhook attempts in flight (at most 4096); of them at most 4 to one endpoint and a quarter (at least 4) to one merchant's endpoints"`
	ServerTLS          `envprefix:"EVENTSD"`
	ClientCA           string `env:"OBOL_EVENTSD_CLIENT_CA" was:"OBOL_CLIENT_CA" flag:"client-ca" form:"a PEM file" doc:"CA of client certificates; when set, eventsd's gRPC callers must present a certificate it signed"`
	Migration
	Common         `envprefix:"EVENTSD"`
	cli.EdgeConfig `envprefix:"EVENTSD"`
}

// AcquirerSim is cmd/acquirer-sim's configuration.
type AcquirerSim struct {
	Addr      string        `env:"OBOL_SIM_ADDR" flag:"addr" default:"127.0.0.1:8443" form:"host:port" doc:"HTTPS listen address"`
	TLSCert   string        `env:"OBOL_SIM_TLS_CERT" flag:"tls-cert" form:"a PEM file" doc:"server certificate (default: a dev certificate in --pki-dir)"`
	TLSKey    string        `env:"OBOL_SIM_TLS_KEY" flag:"tls-key" form:"a PEM file" doc:"server key"`
	PKIDir    string        `flag:"pki-dir" default:"./.obol/tls" form:"a directory" doc:"where the dev certificate lives (created if missing)"`
	SlowDelay time.Duration `flag:"slow-delay" default:"30s" positive:"true" doc:"how long the slow test card takes"`
	LogFormat string        `env:"OBOL_LOG_FORMAT" flag:"log-format" default:"text" oneof:"json|text" doc:"log line format"`
}

// Load is cmd/obol-load's configuration.
type Load struct {
	Duration    time.Duration `flag:"duration" default:"10s" positive:"true" doc:"measured duration of each phase (at least 10s for reported figures)"`
	Warmup      time.Duration `flag:"warmup" default:"2s" doc:"warm-up before each measured phase"`
	Concurrency int           `flag:"concurrency" default:"32" positive:"true" doc:"concurrent clients"`
	Rate        int           `flag:"rate" default:"0" form:"operations per second, 0 to 1000000" doc:"0: each client sends its next operation when the last one is answered (closed loop); above 0: operations arrive at this fixed rate whatever the answers (open loop; --suite risk, and floor: its primitives at N clients, in units: a row of a 32-row batch counts as one), taken by up to --concurrency clients, each one's latency counted from the moment it was queued for them"`
	CPUProfile  string        `flag:"cpuprofile" form:"a file" doc:"write a CPU profile of the measured phase (the load tool and the service share the process)"`
	Suite       string        `flag:"suite" default:"vault" oneof:"vault|risk|forward|payments|gateway|floor" doc:"vault: durable tokenize vs Vault transit encrypt; risk: riskd Evaluate with the default rules on real Redis; forward: /v1/forward vs direct to an HTTPS upstream; payments: authorize+capture through the whole stack; gateway: forward and payments; floor: what this machine's building blocks cost (loopback, HTTPS, gRPC, PostgreSQL commits and rows, Redis, pg_test_fsync) and the ceilings they set"`
}

// Dev is `obol dev`'s configuration.
type Dev struct {
	DataDir     string `flag:"data-dir" default:".obol" form:"a directory" doc:"data directory (keys, databases, credentials; survives a restart)"`
	HTTPAddr    string `flag:"http-addr" default:"127.0.0.1:8080" form:"host:port" doc:"vault REST listen address"`
	GRPCAddr    string `flag:"grpc-addr" default:"127.0.0.1:9090" form:"host:port" doc:"vault gRPC listen address"`
	RiskHTTP    string `flag:"risk-http-addr" default:"127.0.0.1:8081" form:"host:port" doc:"risk engine REST listen address"`
	RiskGRPC    string `flag:"risk-grpc-addr" default:"127.0.0.1:9091" form:"host:port" doc:"risk engine gRPC listen address"`
	GatewayHTTP string `flag:"gateway-http-addr" default:"127.0.0.1:8083" form:"host:port" doc:"gateway (payments) REST listen address"`
	GatewayGRPC string `flag:"gateway-grpc-addr" default:"127.0.0.1:9093" form:"host:port" doc:"gateway gRPC listen address"`
	LedgerHTTP  string `flag:"ledger-http-addr" default:"127.0.0.1:8082" form:"host:port" doc:"ledger REST listen address"`
	LedgerGRPC  string `flag:"ledger-grpc-addr" default:"127.0.0.1:9092" form:"host:port" doc:"ledger gRPC listen address"`
	EventsHTTP  string `flag:"events-http-addr" default:"127.0.0.1:8084" form:"host:port" doc:"events service health and metrics listen address"`
	EventsGRPC  string `flag:"events-grpc-addr" default:"127.0.0.1:9094" form:"host:port" doc:"events service (eventsd) internal gRPC listen address"`
	SimAddr     string `flag:"simulator-addr" default:"127.0.0.1:8443" form:"host:port" doc:"acquirer simulator HTTPS listen address"`
	DemoAddr    string `flag:"demo-addr" default:"127.0.0.1:3000" form:"host:port, or empty for no demo shop" doc:"demo shop (hosted fields checkout) listen address"`
	LogFormat   string `flag:"log-format" default:"text" oneof:"text|json" doc:"log line format"`
	Tracing
	PayoutDelay int    `flag:"payout-delay" default:"-1" form:"0-365 days, or -1 for the ledger settings' delay_days (2)" doc:"days from capture until funds can be paid out (T+N); 0 releases them at once, so obol payouts run pays out today's captures"`
	RoutesFile  string `flag:"routes" form:"a YAML file" doc:"route file for /v1/forward; default: DATA-DIR/routes.yaml, regenerated on every start"`
	Settings    string `env:"OBOL_LEDGER_SETTINGS" flag:"ledger-settings" form:"a YAML file" doc:"the ledger's merchant fees and payout terms (default: 2.9% + 30, daily, T+2)"`
}

// DevDir is where obol's verbs find a running obol dev.
type DevDir struct {
	DataDir string `flag:"data-dir" default:".obol" form:"a directory" doc:"obol dev's data directory (its databases, addresses and tokens)"`
}

// ClientCert is the client certificate obol's verbs present to the
// daemons they dial over gRPC, for daemons that require one (started with
// a client CA, e.g. OBOL_LEDGERD_CLIENT_CA).
type ClientCert struct {
	Cert string `env:"OBOL_CLIENT_CERT" flag:"client-cert" form:"a PEM file" doc:"client certificate obol's verbs present to the daemons they dial over gRPC (mTLS: needed when the daemon has a client CA; with its server CA flag)"`
	Key  string `env:"OBOL_CLIENT_KEY" flag:"client-key" form:"a PEM file" doc:"the key of --client-cert"`
}

// LedgerClient is how obol's ledger and payouts verbs reach ledgerd: the
// flags, else the variables, else a running obol dev's in --data-dir.
type LedgerClient struct {
	LedgerAddr  string `env:"OBOL_LEDGER_ADDR" flag:"ledger-addr" form:"host:port" doc:"ledgerd's gRPC address" note:"default: the running obol dev's in --data-dir; with OBOL_LEDGER_TOKEN set and no obol dev running, 127.0.0.1:9092"`
	LedgerToken string `env:"OBOL_LEDGER_TOKEN" secret:"true" form:"a random string: make one with openssl rand -hex 32 and give the same value to the service and its callers" doc:"ledgerd's service token: ledgerd accepts callers presenting it, the gateway and obol's ledger verbs present it" note:"default: obol dev's from --data-dir"`
	LedgerCA    string `env:"OBOL_LEDGER_CA" flag:"ledger-ca" form:"a PEM file" doc:"CA of ledgerd's TLS certificate: the verb dials ledgerd over TLS trusting it (without it: plaintext gRPC, to a loopback address only)"`
	ClientCert
	DevDir
}

// EventsClient is how obol events and obol listen reach the events API:
// the gateway's gRPC address and the merchant's secret key, from the flags,
// else the variables, else a running obol dev's in --data-dir.
type EventsClient struct {
	GatewayAddr string `env:"OBOL_GATEWAY_ADDR" flag:"gateway-addr" form:"host:port" doc:"gatewayd's gRPC address" note:"default: the running obol dev's in --data-dir"`
	GatewayCA   string `env:"OBOL_GATEWAY_CA" flag:"gateway-ca" form:"a PEM file" doc:"CA of gatewayd's TLS certificate: the verb dials gatewayd over TLS trusting it (without it: plaintext gRPC, to a loopback address only)"`
	SecretKey   string `env:"OBOL_SECRET_KEY" secret:"true" doc:"the merchant's secret key" note:"default: obol dev's from --data-dir"`
	ClientCert
	DevDir
}

// LedgerDB is how obol ledger verify reads the journal.
type LedgerDB struct {
	PostgresURL string `env:"OBOL_LEDGER_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the ledger's database (journal, balances, payouts)" note:"default: obol dev's SQLite ledger in --data-dir"`
	DevDir
}

// GatewayDB is how obol gateway outbox and reconcile read the gateway's
// database.
type GatewayDB struct {
	PostgresURL string `env:"OBOL_GATEWAY_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the gateway's database (payments, refunds, its ledger and event outboxes)" note:"default: obol dev's gateway.db in --data-dir"`
	DevDir
}

// Reconcile is obol ledger reconcile's configuration.
type Reconcile struct {
	GatewayPostgresURL string `env:"OBOL_GATEWAY_POSTGRES_URL" flag:"gateway-postgres-url" secret:"password" form:"a postgres:// URL" doc:"the gateway's database (payments, refunds, its ledger and event outboxes)" note:"default: obol dev's gateway.db in --data-dir"`
	LedgerClient
}

// VaultDB is how obol's merchant and audit verbs reach the vault's
// database.
type VaultDB struct {
	PostgresURL string `env:"OBOL_VAULT_POSTGRES_URL" was:"OBOL_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the vault's database (cards, tokens, merchants, audit trail)" note:"default: obol dev's in --data-dir"`
	DevDir
}

// AuditVerify is obol audit verify's configuration.
type AuditVerify struct {
	VaultDB
	VaultAddr   string `env:"OBOL_VAULT_ADDR,VAULT_ADDR" flag:"vault-addr" form:"a URL" doc:"HashiCorp Vault address" note:"when set, the anchor vaultd keeps in Vault is checked too"`
	VaultToken  string `env:"OBOL_VAULT_TOKEN,VAULT_TOKEN" secret:"true" doc:"the Vault token this binary authenticates with" note:"one that can read the anchor, e.g. an obol-auditor token"`
	VaultCACert string `env:"OBOL_VAULT_CACERT,VAULT_CACERT" flag:"vault-cacert" form:"a PEM file" doc:"CA certificate of Vault's TLS (default: the system's roots)"`
	AnchorPath  string `flag:"anchor-path" default:"secret/data/obol/audit-anchor" doc:"KV v2 path of the anchor"`
}

// Keys is obol keys' configuration (vaultd's Vault and database settings).
type Keys struct {
	Vault
	PostgresURL string `env:"OBOL_VAULT_POSTGRES_URL" was:"OBOL_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the vault's database (cards, tokens, merchants, audit trail)" note:"required"`
}

// VaultSetup is obol vault setup's configuration.
type VaultSetup struct {
	Address         string `env:"OBOL_VAULT_ADDR,VAULT_ADDR" flag:"vault-addr" default:"http://127.0.0.1:8200" form:"a URL" doc:"HashiCorp Vault address"`
	Token           string `env:"OBOL_VAULT_TOKEN,VAULT_TOKEN" secret:"true" doc:"the Vault token this binary authenticates with" note:"an operator token (required)"`
	CACertFile      string `env:"OBOL_VAULT_CACERT,VAULT_CACERT" flag:"vault-cacert" form:"a PEM file" doc:"CA certificate of Vault's TLS (default: the system's roots)"`
	Mount           string `flag:"transit-mount" default:"transit" doc:"transit mount"`
	KeyName         string `flag:"transit-key" default:"obol-kek" doc:"KEK name"`
	FingerprintPath string `flag:"fingerprint-path" default:"secret/data/obol/fingerprint" doc:"KV v2 path of the fingerprint secret"`
	AppRoleMount    string `flag:"approle-mount" default:"approle" doc:"AppRole auth mount"`
}

// Certs is obol certs create's configuration.
type Certs struct {
	Out             string        `flag:"out" default:"obol-pki" form:"a directory" doc:"where the CA and the certificates are written (created 0700)"`
	DNS             []string      `flag:"dns" form:"DNS names, comma-separated" doc:"extra DNS names in every server certificate (e.g. a load balancer's name)"`
	IPs             []string      `flag:"ip" form:"IP addresses, comma-separated" doc:"extra IP addresses in every server certificate (127.0.0.1 and ::1 are always in)"`
	SANs            []string      `flag:"san" form:"daemon=name pairs, comma-separated, e.g. vaultd=vault.example.com,gatewayd=10.0.0.7" doc:"extra DNS names or IP addresses in one daemon's certificate"`
	CDENamespace    string        `flag:"cde-namespace" default:"obol-cde" doc:"Kubernetes namespace of vaultd and gatewayd (the cardholder-data environment)"`
	CoreNamespace   string        `flag:"core-namespace" default:"obol" doc:"Kubernetes namespace of riskd, ledgerd and eventsd"`
	ClusterDomain   string        `flag:"cluster-domain" default:"cluster.local" doc:"Kubernetes cluster domain"`
	GatewayIdentity string        `flag:"gateway-identity" default:"spiffe://obol.local/gatewayd" form:"a URI" doc:"URI SAN of the gateway's client certificate (vaultd's --gateway-identity)"`
	CAValidity      time.Duration `flag:"ca-validity" default:"87600h" positive:"true" doc:"how long the CA is valid"`
	Validity        time.Duration `flag:"validity" default:"8760h" positive:"true" doc:"how long each server and client certificate is valid"`
	ReuseCA         bool          `flag:"reuse-ca" doc:"issue with the CA already in --out instead of creating one (to add or renew certificates)"`
	Force           bool          `flag:"force" doc:"overwrite existing files (without it nothing is written when one exists)"`
}

// MigrateCheck is obol migrate's --check.
type MigrateCheck struct {
	Check bool `flag:"check" doc:"only compare the schema's version with this binary's; exit 1 when it is behind"`
}

// MigrateVault, MigrateGateway, MigrateLedger and MigrateEvents are the
// obol migrate subcommands' configurations: each database's URL comes
// from the same flag and variable as its daemon's.
type (
	MigrateVault struct {
		PostgresURL string `env:"OBOL_VAULT_POSTGRES_URL" was:"OBOL_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the vault's database (cards, tokens, merchants, audit trail)" note:"required"`
		MigrateCheck
	}
	MigrateGateway struct {
		PostgresURL string `env:"OBOL_GATEWAY_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the gateway's database (payments, refunds, its ledger and event outboxes)" note:"required"`
		MigrateCheck
	}
	MigrateLedger struct {
		PostgresURL string `env:"OBOL_LEDGER_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the ledger's database (journal, balances, payouts)" note:"required"`
		MigrateCheck
	}
	MigrateEvents struct {
		PostgresURL string `env:"OBOL_EVENTS_POSTGRES_URL" flag:"postgres-url" secret:"password" form:"a postgres:// URL" doc:"the events database (events, webhook endpoints, deliveries)" note:"required"`
		MigrateCheck
	}
)

// Migration is how a daemon with a database treats its schema at start.
type Migration struct {
	Migrate string `env:"OBOL_MIGRATE" flag:"migrate" default:"auto" oneof:"auto|off" doc:"auto: apply pending schema migrations at start (needs DDL rights); off: never run DDL, refuse to start when the schema is behind this binary (run obol migrate first)"`
}

// Binary is one binary (or group of obol verbs) and its settings.
type Binary struct {
	Name   string // as the table shows it, e.g. "vaultd" or "obol ledger"
	Config any    // a pointer to its config struct
}

// Binaries are every binary's settings, in the table's order.
var Binaries = []Binary{
	{"vaultd", &Vaultd{}},
	{"gatewayd", &Gatewayd{}},
	{"riskd", &Riskd{}},
	{"ledgerd", &Ledgerd{}},
	{"eventsd", &Eventsd{}},
	{"acquirer-sim", &AcquirerSim{}},
	{"obol-load", &Load{}},
	{"obol dev", &Dev{}},
	{"obol merchants create, obol audit list", &VaultDB{}},
	{"obol audit verify", &AuditVerify{}},
	{"obol keys", &Keys{}},
	{"obol vault setup", &VaultSetup{}},
	{"obol ledger balances, import-settlement; obol payouts", &LedgerClient{}},
	{"obol ledger verify", &LedgerDB{}},
	{"obol events, obol listen", &EventsClient{}},
	{"obol ledger reconcile, obol reconcile", &Reconcile{}},
	{"obol gateway outbox", &GatewayDB{}},
	{"obol certs create", &Certs{}},
	{"obol migrate vault", &MigrateVault{}},
	{"obol migrate gateway", &MigrateGateway{}},
	{"obol migrate ledger", &MigrateLedger{}},
	{"obol migrate events", &MigrateEvents{}},
}

// IgnoredPrefixes are variables of the test harness and tools, never
// warned about.
var IgnoredPrefixes = []string{"OBOL_TEST_", "OBOL_DRILL_", "OBOL_TOPOLOGY_", "OBOL_VAULT_BIN"}

// Known is every OBOL_* variable some binary reads.
func Known() map[string]bool {
	k := map[string]bool{}
	for _, b := range Binaries {
		for _, s := range cli.Settings(b.Config) {
			for _, e := range s.Env {
				k[e] = true
			}
		}
	}
	return k
}

// Former maps every former name of a setting (a was tag) to the variables
// that replaced it, in every binary.
func Former() map[string][]string {
	f := map[string][]string{}
	for _, b := range Binaries {
		for _, s := range cli.Settings(b.Config) {
			for _, w := range s.Was {
				if !slices.Contains(f[w], s.Var()) {
					f[w] = append(f[w], s.Var())
				}
			}
		}
	}
	return f
}

// Unknown lists the OBOL_* variables set in the environment that no
// binary reads (a typo, or a setting of another release): each binary
// warns about them at start. It does not refuse them: one environment is
// often shared by several binaries and tools.
func Unknown() []string { return cli.UnknownEnv(Known(), IgnoredPrefixes...) }

// WarnUnknown logs a warning naming every OBOL_* variable set that no
// binary reads (the names only, never the values); former names (which the
// binaries that read them refuse at start) are named with what replaced
// them.
func WarnUnknown(log *slog.Logger) {
	typos, renamed := SplitUnknown()
	if len(typos) > 0 {
		log.Warn("ignoring OBOL_* variables that no Obol binary reads (a typo?); see deploy/CONFIG.md", "variables", strings.Join(typos, ","))
	}
	for _, r := range renamed {
		log.Warn("ignoring a renamed variable; see deploy/CONFIG.md", "variable", r)
	}
}

// SplitUnknown is Unknown split into typos and former names, each of the
// latter as "OBOL_X (now OBOL_A or OBOL_B)".
func SplitUnknown() (typos, renamed []string) {
	former := Former()
	for _, u := range Unknown() {
		if now, ok := former[u]; ok {
			renamed = append(renamed, u+" (now "+strings.Join(now, " or ")+")")
			continue
		}
		typos = append(typos, u)
	}
	return typos, renamed
}
