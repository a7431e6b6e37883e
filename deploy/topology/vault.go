package topology

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/obolpay/obol/internal/testenv"
	"github.com/obolpay/obol/vault/keys/transit"
)

// VaultNodes is the size of the Vault Raft cluster.
const VaultNodes = 3

// vaultNode is one `vault server` of the Raft cluster.
type vaultNode struct {
	*Process
	apiURL      string
	clusterAddr string
}

var vaultHTTP = &http.Client{Timeout: 5 * time.Second}

// vaultCall calls a Vault node's API (token may be empty) and returns the
// status and body.
func vaultCall(base, token, method, path string, body any) (int, []byte, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+"/v1/"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	resp, err := vaultHTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// health is a node's /v1/sys/health status: 200 active, 429 standby, 501
// not initialised, 503 sealed.
func (n *vaultNode) health() (int, error) {
	code, _, err := vaultCall(n.apiURL, "", http.MethodGet, "sys/health", nil)
	return code, err
}

// startVault starts the three Raft nodes, initialises the first (one
// unseal key share), unseals every node (the others join it by
// retry_join), and sets transit and KV up through HAProxy.
func (t *Topology) startVault(tb testenv.TB) error {
	bin, err := vaultBinaryPath()
	if err != nil {
		return err
	}
	t.VaultBin = bin
	api := make([]int, VaultNodes)
	cluster := make([]int, VaultNodes)
	for i := range api {
		api[i], cluster[i] = testenv.FreePort(tb), testenv.FreePort(tb)
	}
	var joins strings.Builder
	for i := range api {
		fmt.Fprintf(&joins, "  retry_join {\n    leader_api_addr = \"http://127.0.0.1:%d\"\n  }\n", api[i])
	}
	for i := range api {
		dir := filepath.Join(t.Dir, "vault", "node"+strconv.Itoa(i))
		if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o700); err != nil {
			return err
		}
		// performance_multiplier 1: production timing (leader election in
		// a few seconds), not the development default of 5.
		hcl := fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = "node%d"
  performance_multiplier = 1
%s}
listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}
api_addr      = "http://127.0.0.1:%d"
cluster_addr  = "https://127.0.0.1:%d"
disable_mlock = true
ui            = false
`, filepath.Join(dir, "raft"), i, joins.String(), api[i], cluster[i], api[i], cluster[i])
		cfg := filepath.Join(dir, "vault.hcl")
		if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
			return err
		}
		lf, err := logFile(t.logDir, "vault-"+strconv.Itoa(i))
		if err != nil {
			return err
		}
		t.closers = append(t.closers, func() { lf.Close() })
		n := &vaultNode{apiURL: fmt.Sprintf("http://127.0.0.1:%d", api[i]), clusterAddr: fmt.Sprintf("127.0.0.1:%d", cluster[i])}
		n.Process = &Process{Name: "vault-" + strconv.Itoa(i), Addr: fmt.Sprintf("127.0.0.1:%d", api[i]), path: bin, dir: dir,
			args: []string{"server", "-config=" + cfg},
			env:  []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "VAULT_LOG_LEVEL=warn", "SKIP_SETCAP=1"},
			out:  &testenv.SyncBuffer{}, log: lf}
		n.ready = func() error { _, err := n.health(); return err }
		t.vault = append(t.vault, n)
		t.procs = append(t.procs, n.Process)
	}
	for _, n := range t.vault {
		if err := n.Start(); err != nil {
			return err
		}
	}
	code, b, err := vaultCall(t.vault[0].apiURL, "", http.MethodPut, "sys/init", map[string]int{"secret_shares": 1, "secret_threshold": 1})
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("vault init: HTTP %d %s %v", code, b, err)
	}
	var init struct {
		Keys      []string `json:"keys"`
		RootToken string   `json:"root_token"`
	}
	if err := json.Unmarshal(b, &init); err != nil || len(init.Keys) != 1 || init.RootToken == "" {
		return fmt.Errorf("vault init answer: %v", err)
	}
	t.unsealKey, t.VaultToken = init.Keys[0], init.RootToken
	if err := t.unseal(0, 200); err != nil {
		return err
	}
	// Autopilot makes a joining node a voter once it has been healthy for
	// server_stabilization_time (10s by default); until then a leader's
	// loss leaves no quorum. Shorter here, to start quickly.
	if code, b, err := vaultCall(t.vault[0].apiURL, t.VaultToken, http.MethodPost, "sys/storage/raft/autopilot/configuration",
		map[string]any{"server_stabilization_time": "2s", "cleanup_dead_servers": false}); err != nil || code/100 != 2 {
		return fmt.Errorf("autopilot configuration: HTTP %d %.200s %v", code, b, err)
	}
	for i := 1; i < VaultNodes; i++ {
		if err := t.unseal(i, 429); err != nil {
			return err
		}
	}
	if err := testenv.WaitFor(60*time.Second, func() error {
		return t.vaultVoters(VaultNodes)
	}); err != nil {
		return fmt.Errorf("the vault nodes did not join as voters: %w", err)
	}
	return nil
}

// unseal submits the unseal key to node i until its health answers want
// (200 active, 429 standby; a joining node may refuse it until it has
// reached the leader).
func (t *Topology) unseal(i, want int) error {
	n := t.vault[i]
	err := testenv.WaitFor(90*time.Second, func() error {
		code, err := n.health()
		if err != nil {
			return err
		}
		if code == want || (want == 429 && code == 200) {
			return nil
		}
		if code == 503 || code == 501 {
			c, b, err := vaultCall(n.apiURL, "", http.MethodPut, "sys/unseal", map[string]string{"key": t.unsealKey})
			if err != nil || c != http.StatusOK {
				return fmt.Errorf("unseal: HTTP %d %.200s %v", c, b, err)
			}
		}
		return fmt.Errorf("%s: health %d", n.Name, code)
	})
	if err != nil {
		return fmt.Errorf("unseal %s: %w\n%s", n.Name, err, tail(n.Output(), 15))
	}
	return nil
}

// setupVault runs what `obol vault setup` does (transit mount, KEK, KV v2
// and the fingerprint secret) through HAProxy.
func (t *Topology) setupVault() error {
	c, err := transit.New(transit.Config{Address: t.VaultAddr, Token: t.VaultToken, KeyName: t.TransitKey})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = c.Setup(ctx, transit.SetupOptions{})
	return err
}

// VaultRaftPeers lists the Raft configuration's node ids (read through
// HAProxy, so from the active node; from the first node while HAProxy is
// not up yet).
func (t *Topology) VaultRaftPeers() ([]string, error) {
	servers, err := t.raftServers()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range servers {
		ids = append(ids, s.NodeID)
	}
	return ids, nil
}

// vaultVoters checks that the Raft configuration has n voters.
func (t *Topology) vaultVoters(n int) error {
	servers, err := t.raftServers()
	if err != nil {
		return err
	}
	voters := 0
	for _, s := range servers {
		if s.Voter {
			voters++
		}
	}
	if voters != n {
		return fmt.Errorf("raft: %d voters of %d servers, want %d", voters, len(servers), n)
	}
	return nil
}

type raftServer struct {
	NodeID string `json:"node_id"`
	Voter  bool   `json:"voter"`
	Leader bool   `json:"leader"`
}

func (t *Topology) raftServers() ([]raftServer, error) {
	base := t.VaultAddr
	if base == "" {
		base = t.vault[0].apiURL
	}
	code, b, err := vaultCall(base, t.VaultToken, http.MethodGet, "sys/storage/raft/configuration", nil)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("raft configuration: HTTP %d %.200s %v", code, b, err)
	}
	var r struct {
		Data struct {
			Config struct {
				Servers []raftServer `json:"servers"`
			} `json:"config"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return r.Data.Config.Servers, nil
}

// VaultLeader returns the index of the active Vault node (the one whose
// /v1/sys/health answers 200).
func (t *Topology) VaultLeader() (int, error) {
	var errs []error
	for i, n := range t.vault {
		if !n.Running() {
			continue
		}
		code, err := n.health()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if code == http.StatusOK {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no active vault node: %w", errors.Join(errs...))
}

// VaultNode is node i's process (Addr is its API address).
func (t *Topology) VaultNode(i int) *Process { return t.vault[i].Process }

// KillVaultNode SIGKILLs Vault node i.
func (t *Topology) KillVaultNode(i int) error {
	if i < 0 || i >= len(t.vault) {
		return fmt.Errorf("no vault node %d", i)
	}
	t.vault[i].Kill()
	return nil
}

// RestartVaultNode starts node i again on its Raft data, unseals it (an
// operator does this, or auto-unseal in production) and waits until it
// is back in the cluster as the active node or a standby.
func (t *Topology) RestartVaultNode(i int) error {
	if i < 0 || i >= len(t.vault) {
		return fmt.Errorf("no vault node %d", i)
	}
	if err := t.vault[i].Start(); err != nil {
		return err
	}
	if err := t.unseal(i, 429); err != nil {
		return err
	}
	return testenv.WaitFor(60*time.Second, func() error { return t.vaultVoters(VaultNodes) })
}

// WaitVaultActive waits until Vault answers as active through HAProxy
// (after a leader's death: a standby won the election and HAProxy's health
// check found it) and returns how long that took.
func (t *Topology) WaitVaultActive(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := testenv.WaitFor(timeout, func() error {
		code, _, err := vaultCall(t.VaultAddr, "", http.MethodGet, "sys/health", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("vault through haproxy: health %d", code)
		}
		return nil
	})
	return time.Since(start), err
}

// RotateKEK rotates the KEK with the stock vault CLI, as an operator does:
// vault write -f transit/keys/<key>/rotate, through HAProxy.
func (t *Topology) RotateKEK() error {
	cmd := exec.Command(t.VaultBin, "write", "-f", "transit/keys/"+t.TransitKey+"/rotate")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.Dir, "VAULT_ADDR=" + t.VaultAddr, "VAULT_TOKEN=" + t.VaultToken}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("vault write -f transit/keys/%s/rotate: %w\n%s", t.TransitKey, err, out)
	}
	return nil
}

// vaultBinaryPath finds the vault binary internal/testenv uses (waiting for
// its build when one is under way).
func vaultBinaryPath() (p string, err error) {
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(fatal); ok {
				err = errors.New(f.msg)
				return
			}
			panic(r)
		}
	}()
	return testenv.VaultBinary(panicTB{}), nil
}
