// Command vaultd is Obol's production tokenization vault: HashiCorp Vault
// transit for keys, PostgreSQL for ciphertext, Redis for CVCs. Its settings
// are config.Vaultd (flags override OBOL_* variables; see deploy/CONFIG.md); it fails at start, with a
// message that says what to fix, when a dependency is unreachable or
// misconfigured.
package main

import (
	"context"
	"os"

	"github.com/spf13/pflag"

	"github.com/obolpay/obol/internal/cli"
	"github.com/obolpay/obol/internal/cli/config"
	"github.com/obolpay/obol/internal/migrate"
	"github.com/obolpay/obol/vault/keys/transit"
	"github.com/obolpay/obol/vault/vaultd"
)

func main() {
	ctx, cancel := cli.SignalContext()
	defer cancel()
	cli.Exit("vaultd", run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) error {
	var c config.Vaultd
	if err := cli.Parse(pflag.NewFlagSet("vaultd", pflag.ContinueOnError), &c, args); err != nil {
		return err
	}
	cfg := vaultdConfig(&c)
	var err error
	if cfg.Edge, err = c.EdgeConfig.Edge(cli.DaemonVars("VAULTD"), cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
		return err
	}
	// gRPC is always TLS (vaultd.Start refuses to run without it).
	if err := cli.CheckListeners(cfg.Edge, cfg.HTTPAddr, cfg.GRPCAddr, true); err != nil {
		return err
	}
	// The token comes from the environment only, never from a flag (flags
	// show up in process listings); another auth method set wins over it.
	if cfg.Vault.RoleID != "" || cfg.Vault.TokenFile != "" || cfg.Vault.KubernetesRole != "" {
		cfg.Vault.Token = ""
	}
	var stopTracing func()
	if cfg.Logger, stopTracing, err = c.Start(ctx, "obol-vaultd"); err != nil {
		return err
	}
	defer stopTracing()
	in, err := vaultd.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer in.Close()
	return in.Serve(ctx)
}

// vaultdConfig is vaultd.Start's configuration from the parsed settings
// (the edge is added by run).
func vaultdConfig(c *config.Vaultd) vaultd.Config {
	return vaultd.Config{
		Vault: transit.Config{Address: c.Address, Namespace: c.Namespace, Token: c.Token, CACertFile: c.CACertFile, TokenFile: c.TokenFile,
			RoleID: c.RoleID, SecretIDFile: c.SecretIDFile, AppRoleMount: c.AppRoleMount,
			KubernetesRole: c.KubernetesRole, KubernetesMount: c.KubernetesMount, KubernetesJWTFile: c.KubernetesJWTFile,
			Mount: c.Mount, KeyName: c.KeyName, FingerprintPath: c.FingerprintPath, AuditAnchorPath: c.AuditAnchorPath},
		PostgresURL: c.PostgresURL, Migrate: migrate.Mode(c.Migrate), RedisURL: c.RedisURL, AuthLimitRedisURL: c.AuthLimitRedisURL, GRPCAddr: c.GRPCAddr, HTTPAddr: c.HTTPAddr,
		TLSCertFile: c.TLSCert, TLSKeyFile: c.TLSKey, ClientCAFile: c.ClientCA, GatewayIdentity: c.GatewayIdentity, RequireRequestNonce: c.RequireNonce,
		CVCTTL: c.CVCTTL, CVCClientSecretTTL: c.CVCClientSecretTTL, DEKMaxAge: c.DEKMaxAge, DEKMaxUses: c.DEKMaxUses,
		KeyCheckEvery: c.KeyCheckEvery, KEKCheckEvery: c.KEKCheckEvery, AuditAnchorEvery: c.AuditAnchorEvery,
		ReencryptOlderThan: c.ReencryptOlderThan, ReencryptEvery: c.ReencryptEvery, NoAutoRewrap: c.NoAutoRewrap, Reflection: c.Reflection,
	}
}
