// Command vaultd is Obol's production tokenization vault: HashiCorp Vault
// transit for keys, PostgreSQL for ciphertext, Redis for CVCs. Every setting
// is a flag with an OBOL_* environment default; it fails at start, with a
// message that says what to fix, when a dependency is unreachable or
// misconfigured.
package main

import (
	"context"
	"flag"
	"os"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/service"
	"github.com/obolpay/obol/vault/vaultd"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	cli.Exit("vaultd", run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("vaultd", flag.ContinueOnError)
	var cfg vaultd.Config
	fs.StringVar(&cfg.Vault.Address, "vault-addr", cli.Env("OBOL_VAULT_ADDR", cli.Env("VAULT_ADDR", "")), "HashiCorp Vault address (OBOL_VAULT_ADDR)")
	fs.StringVar(&cfg.Vault.Namespace, "vault-namespace", cli.Env("OBOL_VAULT_NAMESPACE", ""), "Vault namespace (OBOL_VAULT_NAMESPACE)")
	fs.StringVar(&cfg.Vault.CACertFile, "vault-cacert", cli.Env("OBOL_VAULT_CACERT", ""), "CA certificate for Vault's TLS (OBOL_VAULT_CACERT)")
	fs.StringVar(&cfg.Vault.TokenFile, "vault-token-file", cli.Env("OBOL_VAULT_TOKEN_FILE", ""), "file holding a Vault token kept fresh by Vault Agent (OBOL_VAULT_TOKEN_FILE)")
	fs.StringVar(&cfg.Vault.RoleID, "vault-role-id", cli.Env("OBOL_VAULT_ROLE_ID", ""), "AppRole role id (OBOL_VAULT_ROLE_ID)")
	fs.StringVar(&cfg.Vault.SecretIDFile, "vault-secret-id-file", cli.Env("OBOL_VAULT_SECRET_ID_FILE", ""), "file holding the AppRole secret id (OBOL_VAULT_SECRET_ID_FILE)")
	fs.StringVar(&cfg.Vault.AppRoleMount, "vault-approle-mount", cli.Env("OBOL_VAULT_APPROLE_MOUNT", "approle"), "AppRole auth mount")
	fs.StringVar(&cfg.Vault.KubernetesRole, "vault-k8s-role", cli.Env("OBOL_VAULT_K8S_ROLE", ""), "Vault Kubernetes auth role (OBOL_VAULT_K8S_ROLE)")
	fs.StringVar(&cfg.Vault.KubernetesMount, "vault-k8s-mount", cli.Env("OBOL_VAULT_K8S_MOUNT", "kubernetes"), "Vault Kubernetes auth mount (OBOL_VAULT_K8S_MOUNT)")
	fs.StringVar(&cfg.Vault.KubernetesJWTFile, "vault-k8s-jwt-file", cli.Env("OBOL_VAULT_K8S_JWT_FILE", transit.DefaultKubernetesJWTFile), "service account token file for Kubernetes auth (OBOL_VAULT_K8S_JWT_FILE)")
	fs.StringVar(&cfg.Vault.Mount, "transit-mount", cli.Env("OBOL_TRANSIT_MOUNT", "transit"), "transit mount (OBOL_TRANSIT_MOUNT)")
	fs.StringVar(&cfg.Vault.KeyName, "transit-key", cli.Env("OBOL_TRANSIT_KEY", "obol-kek"), "transit key used as KEK (OBOL_TRANSIT_KEY)")
	fs.StringVar(&cfg.Vault.FingerprintPath, "fingerprint-path", cli.Env("OBOL_FINGERPRINT_PATH", "secret/data/obol/fingerprint"), "KV v2 path of the fingerprint secret")
	fs.StringVar(&cfg.PostgresURL, "postgres-url", cli.Env("OBOL_POSTGRES_URL", ""), "vault database URL (OBOL_POSTGRES_URL)")
	fs.StringVar(&cfg.RedisURL, "redis-url", cli.Env("OBOL_REDIS_URL", ""), "Redis URL for CVCs (OBOL_REDIS_URL)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cli.Env("OBOL_GRPC_ADDR", "127.0.0.1:9090"), "gRPC listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cli.Env("OBOL_HTTP_ADDR", "127.0.0.1:8080"), "REST listen address")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", cli.Env("OBOL_TLS_CERT", ""), "server certificate (OBOL_TLS_CERT)")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", cli.Env("OBOL_TLS_KEY", ""), "server key (OBOL_TLS_KEY)")
	fs.StringVar(&cfg.ClientCAFile, "client-ca", cli.Env("OBOL_CLIENT_CA", ""), "CA of service client certificates (OBOL_CLIENT_CA)")
	fs.StringVar(&cfg.GatewayIdentity, "gateway-identity", cli.Env("OBOL_GATEWAY_IDENTITY", service.DefaultGatewayIdentity), "URI SAN of the gateway's client certificate")
	fs.DurationVar(&cfg.CVCTTL, "cvc-ttl", cli.EnvDuration("OBOL_CVC_TTL", 0), "how long a CVC is held (default 1h, max 24h)")
	fs.DurationVar(&cfg.CVCClientSecretTTL, "cvc-client-secret-ttl", cli.EnvDuration("OBOL_CVC_CLIENT_SECRET_TTL", 0), "how long a CVC client secret stays usable (default 10m, max 1h)")
	fs.DurationVar(&cfg.DEKMaxAge, "dek-max-age", cli.EnvDuration("OBOL_DEK_MAX_AGE", 0), "retire a data key after this long (default 1h)")
	fs.Int64Var(&cfg.DEKMaxUses, "dek-max-uses", 0, "retire a data key after this many encryptions (default 1000000)")
	fs.DurationVar(&cfg.KeyCheckEvery, "key-check-interval", cli.EnvDuration("OBOL_KEY_CHECK_INTERVAL", 0), "how often Vault's seal status is checked (default 1s)")
	fs.DurationVar(&cfg.KEKCheckEvery, "kek-check-interval", cli.EnvDuration("OBOL_KEK_CHECK_INTERVAL", 0), "how often the KEK version is checked for rotations (default 10s)")
	fs.DurationVar(&cfg.AuditAnchorEvery, "audit-anchor-interval", cli.EnvDuration("OBOL_AUDIT_ANCHOR_INTERVAL", 0), "how often the audit chain's head is anchored in Vault (default 10s)")
	fs.StringVar(&cfg.Vault.AuditAnchorPath, "audit-anchor-path", cli.Env("OBOL_AUDIT_ANCHOR_PATH", "secret/data/obol/audit-anchor"), "KV v2 path of the audit anchor")
	fs.DurationVar(&cfg.ReencryptOlderThan, "reencrypt-older-than", cli.EnvDuration("OBOL_REENCRYPT_OLDER_THAN", 0), "re-seal cards under DEKs older than this in the background and destroy unused DEKs (0: off)")
	fs.DurationVar(&cfg.ReencryptEvery, "reencrypt-interval", cli.EnvDuration("OBOL_REENCRYPT_INTERVAL", 0), "how often the re-encryption job runs (default 1h)")
	fs.BoolVar(&cfg.NoAutoRewrap, "no-auto-rewrap", cli.EnvBool("OBOL_NO_AUTO_REWRAP", false), "do not rewrap stored DEKs automatically after a KEK rotation")
	fs.BoolVar(&cfg.Reflection, "grpc-reflection", cli.EnvBool("OBOL_GRPC_REFLECTION", false), "enable gRPC reflection")
	logFormat := fs.String("log-format", cli.Env("OBOL_LOG_FORMAT", "json"), "json or text")
	edge := cli.AddEdgeFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.Edge, err = edge.Edge(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
		return err
	}
	// gRPC is always TLS (vaultd.Start refuses to run without it).
	if err := cli.CheckListeners(cfg.Edge, cfg.HTTPAddr, cfg.GRPCAddr, true); err != nil {
		return err
	}
	// The token is read from the environment only, never from a flag (flags
	// show up in process listings).
	cfg.Vault.Token = cli.Env("OBOL_VAULT_TOKEN", os.Getenv("VAULT_TOKEN"))
	if cfg.Vault.RoleID != "" || cfg.Vault.TokenFile != "" || cfg.Vault.KubernetesRole != "" {
		cfg.Vault.Token = ""
	}
	cfg.Logger = cli.Logger(*logFormat)
	in, err := vaultd.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	return in.Serve(ctx)
}
