package drill

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/deploy/topology"
	"github.com/obolpay/obol/internal/testenv"
)

// The multi-node drills (issue 18): the same load, census and checks as
// the single-node drills, on the reference topology (deploy/topology):
// the clients reach vaultd and gatewayd through HAProxy only, so every
// answer they see must be a success or a 503 with an error code.

// topoFault is a fault on the topology.
func topoFault(phase string, at float64, what string, run func(s *stack, tp *topology.Topology) error) fault {
	return fault{phase: phase, at: at, what: fmt.Sprintf("%s at %.0f%% of the %s requests", what, 100*at, phase),
		run: func(s *stack, _ *load, _ <-chan struct{}) error { return run(s, s.topo) }}
}

// vaultFailover is how long a standby may take to become active and
// HAProxy to find it.
const vaultFailover = 60 * time.Second

// killVaultLeader SIGKILLs the active Vault node and waits until a
// standby is active through HAProxy; the node killed is remembered for
// restartVaultNode.
func killVaultLeader(s *stack, tp *topology.Topology) error {
	leader, err := tp.VaultLeader()
	if err != nil {
		return err
	}
	if err := tp.KillVaultNode(leader); err != nil {
		return err
	}
	s.killedVault = leader
	took, err := tp.WaitVaultActive(vaultFailover)
	if err != nil {
		return fmt.Errorf("no standby took over within %s: %w", vaultFailover, err)
	}
	next, err := tp.VaultLeader()
	if err != nil {
		return err
	}
	s.note("vault node %d (the leader) SIGKILLed; node %d active through HAProxy %s later", leader, next, took.Round(time.Millisecond))
	return nil
}

// waitVaultVoters runs before the vault-leader drill's load. Raft's
// autopilot promotes a joined node to voter only after its stabilization
// time (10 s): killing the leader of a cluster whose other nodes are not
// voters yet leaves no quorum, which is not the drill. It waits until all
// three vote.
func waitVaultVoters(s *stack) error {
	waited := time.Now()
	if err := testenv.WaitFor(60*time.Second, func() error { return vaultVoters(s, s.topo) }); err != nil {
		return fmt.Errorf("the vault nodes are not all voters: %w", err)
	}
	s.note("before the load: every Vault node a raft voter (waited %s)", time.Since(waited).Round(time.Millisecond))
	return nil
}

// vaultVoters: the raft configuration (through HAProxy, from the active
// node) has topology.VaultNodes voters.
func vaultVoters(s *stack, tp *topology.Topology) error {
	req, err := http.NewRequest(http.MethodGet, tp.VaultAddr+"/v1/sys/storage/raft/configuration", nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", tp.VaultToken)
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Data struct {
			Config struct {
				Servers []struct {
					NodeID string `json:"node_id"`
					Voter  bool   `json:"voter"`
				} `json:"servers"`
			} `json:"config"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("raft configuration: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return err
	}
	var voters []string
	for _, sv := range r.Data.Config.Servers {
		if sv.Voter {
			voters = append(voters, sv.NodeID)
		}
	}
	if len(voters) != topology.VaultNodes {
		return fmt.Errorf("raft voters %v of %d servers", voters, len(r.Data.Config.Servers))
	}
	return nil
}

func restartVaultNode(s *stack, tp *topology.Topology) error {
	began := time.Now()
	if err := tp.RestartVaultNode(s.killedVault); err != nil {
		return err
	}
	if err := testenv.WaitFor(60*time.Second, func() error { return vaultVoters(s, tp) }); err != nil {
		return fmt.Errorf("vault node %d restarted but not a voter again: %w", s.killedVault, err)
	}
	s.note("vault node %d restarted, unsealed and a voting standby again in %s", s.killedVault, time.Since(began).Round(time.Millisecond))
	return nil
}

// killReplica SIGKILLs one replica and starts it again (on the same
// ports) once it is gone: the other replica serves meanwhile.
func killReplica(p *topology.Process) func(s *stack, _ *topology.Topology) error {
	return func(s *stack, _ *topology.Topology) error {
		p.Kill()
		began := time.Now()
		if err := p.Start(); err != nil {
			return err
		}
		s.note("%s SIGKILLed, started again and ready in %s", p.Name, time.Since(began).Round(time.Millisecond))
		return nil
	}
}

// topologyDrills are the five drills of issue 18, in the order they run on
// one topology (the PostgreSQL failover last: it leaves no standby).
func topologyDrills(tp *topology.Topology) []drill {
	var rotatedAt time.Time
	return []drill{
		{name: "vault-leader", lb: true, setup: waitVaultVoters, faults: []fault{
			// In the authorizations: they unwrap DEKs in Vault (the
			// tokenizations of a warm vaultd use its cached DEK).
			topoFault("authorize", 0.3, "the active Vault node SIGKILLed (a standby takes over, HAProxy follows)", killVaultLeader),
			topoFault("capture", 0.5, "the killed Vault node restarted and unsealed", restartVaultNode),
		}},
		{name: "redis-primary", lb: true, faults: []fault{
			// In the authorizations: each takes its token's CVC (GETDEL
			// + WAIT on the CVC's primary) and evaluates risk (riskd's
			// scripts on the primary of its hash tag's slot, the one
			// killed).
			topoFault("authorize", 0.4, "the Redis Cluster primary of riskd's slot SIGKILLed (its replica promoted), restarted as a replica", func(s *stack, tp *topology.Topology) error {
				f, err := tp.KillRedisPrimary("")
				if err != nil {
					return err
				}
				s.note("redis primary %s SIGKILLed: replica %s promoted, cluster ok %s later; %s restarted and a replica again in %s",
					f.Killed, f.Promoted, f.Promotion.Round(time.Millisecond), f.Killed, f.Rejoin.Round(time.Millisecond))
				return nil
			}),
		}, check: func(_ *stack, c *census, flows []flow) []string {
			return checkCVCLostOnlyByFailedAttempts(c, flows)
		}},
		{name: "replicas", lb: true, faults: []fault{
			topoFault("tokenize", 0.5, "vaultd-0 SIGKILLed, restarted", killReplica(tp.Vaultd()[0])),
			topoFault("authorize", 0.3, "gatewayd-1 SIGKILLed, restarted", killReplica(tp.Gatewayd()[1])),
			topoFault("authorize", 0.7, "riskd-0 SIGKILLed, restarted", killReplica(tp.Riskd()[0])),
			topoFault("capture", 0.5, "ledgerd-1 SIGKILLed, restarted", killReplica(tp.Ledgerd()[1])),
			topoFault("refund", 0.5, "gatewayd-0 SIGKILLed, restarted", killReplica(tp.Gatewayd()[0])),
			// While the captures' and refunds' events are relayed and
			// their webhooks delivered (webhookCheck counts them).
			topoFault("capture", 0.8, "eventsd-0 SIGKILLed, restarted", killReplica(tp.Eventsd()[0])),
			topoFault("refund", 0.8, "eventsd-1 SIGKILLed, restarted", killReplica(tp.Eventsd()[1])),
		}},
		{name: "kek-rotate", lb: true, faults: []fault{
			topoFault("tokenize", 0.5, "the KEK rotated with the stock vault CLI (vault write -f transit/keys/<kek>/rotate)", func(s *stack, tp *topology.Topology) error {
				rotatedAt = time.Now()
				if err := tp.RotateKEK(); err != nil {
					return err
				}
				v, err := s.keksLatest()
				if err == nil {
					s.note("KEK at version %d", v)
				}
				return err
			}),
		}, check: func(s *stack, _ *census, flows []flow) []string {
			return s.checkRotation(rotatedAt, flows)
		}},
		{name: "postgres-failover", lb: true, faults: []fault{
			topoFault("capture", 0.4, "the PostgreSQL primary SIGKILLed, the synchronous standby promoted (FailoverPostgres)", func(s *stack, tp *topology.Topology) error {
				began := time.Now()
				if err := tp.FailoverPostgres(); err != nil {
					return err
				}
				s.note("standby promoted and writable %s after the primary's SIGKILL", time.Since(began).Round(time.Millisecond))
				return nil
			}),
		}},
	}
}

// TestTopologyDrill runs the failure drills of issue 18 under the bounded
// payment load on one multi-node topology, one after the other: see the
// README's "Failure drills on the multi-node topology".
func TestTopologyDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("topology drills: start the multi-node layout (Vault Raft, PostgreSQL with a standby, HAProxy, two replicas of each daemon)")
	}
	n := envInt(t, "OBOL_TOPOLOGY_DRILL_PAYMENTS", 60)
	phaseTimeout := time.Duration(envInt(t, "OBOL_DRILL_PHASE_SECONDS", 45)) * time.Second
	bin, err := build()
	require.NoError(t, err, "build the daemons")
	began := time.Now()
	tp := topology.Start(t, topology.Options{BinDir: bin, Race: os.Getenv("OBOL_DRILL_RACE") == "1"})
	t.Logf("topology up in %s", time.Since(began).Round(time.Millisecond))
	s, err := topologyStack(tp)
	require.NoError(t, err)
	wh, err := startWebhooks(tp, s)
	require.NoError(t, err)
	t.Cleanup(wh.close)
	only := os.Getenv("OBOL_TOPOLOGY_DRILLS") // comma-separated names; empty: all
	for _, d := range topologyDrills(tp) {
		d := webhookCheck(wh, tp, d)
		t.Run(d.name, func(t *testing.T) {
			if only != "" && !strings.Contains(","+only+",", ","+d.name+",") {
				t.Skipf("not in OBOL_TOPOLOGY_DRILLS=%s", only)
			}
			runDrill(t, d, s, n, phaseTimeout)
		})
	}
}

// topologyStack is the drills' view of a topology: the addresses through
// HAProxy, the databases' multi-host URLs and the merchant it created.
func topologyStack(tp *topology.Topology) (*stack, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return &stack{
		name: "topology", gwDB: tp.PostgresURLs["gateway"], ledgerDB: tp.PostgresURLs["ledger"], vaultDB: tp.PostgresURLs["vault"],
		gwURL: tp.GatewayURL, vaultURL: tp.VaultdURL, simURL: tp.SimulatorURL, ledgerGRPC: tp.LedgerAddr,
		merchant: tp.MerchantID, sk: tp.SecretKey, http: tp.HTTP, obol: filepath.Join(tp.Bin, "obol"), ledgerToken: tp.LedgerToken,
		ledgerTLS: tp.GatewayClientTLS,
		run:       fmt.Sprintf("%x", b),
		settle:    processingTimeout + 30*sweepInterval,
		outputsFn: tp.Outputs,
		storedFn:  func(t *testing.T) (map[string][]byte, error) { return stored(t, tp) },
		topo:      tp,
	}, nil
}

// stored is what the topology holds at rest, for the leak scan: a pg_dump
// of every database (on the current primary) and every value on every
// Redis Cluster node (primaries and replicas).
func stored(t *testing.T, tp *topology.Topology) (map[string][]byte, error) {
	out := map[string][]byte{}
	for key := range tp.PostgresURLs {
		dump, err := tp.DumpDatabase(key)
		if err != nil {
			return nil, fmt.Errorf("dump the %s database: %w", key, err)
		}
		out["database "+key] = dump
	}
	if r := tp.Redis(); r != nil {
		for addr, kvs := range r.DumpNodes(t) {
			out["redis "+addr] = bytes.Join(kvs, []byte("\n"))
		}
	}
	return out, nil
}

// keys runs an obol keys verb on the topology's Vault (through HAProxy)
// and vault database.
func (s *stack) keys(ctx context.Context, verb ...string) (string, error) {
	tp := s.topo
	args := append([]string{"keys"}, verb...)
	args = append(args, "--vault-addr", tp.VaultAddr, "--transit-key", tp.TransitKey, "--postgres-url", tp.PostgresURLs["vault"])
	cmd := exec.CommandContext(ctx, s.obol, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + tp.Dir, "VAULT_TOKEN=" + tp.VaultToken}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("obol %s: %w\n%s", strings.Join(verb, " "), err, out)
	}
	return string(out), nil
}

var latestRE = regexp.MustCompile(`latest version (\d+)`)

// keksLatest is the KEK's latest version, from obol keys status.
func (s *stack) keksLatest() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.keys(ctx, "status")
	if err != nil {
		return 0, err
	}
	m := latestRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("obol keys status printed no latest version:\n%s", out)
	}
	return strconv.Atoi(m[1])
}

// checkRotation: after the KEK rotation every DEK is rewrapped to the new
// version (vaultd does it by itself; the drill then runs `obol keys
// rewrap` as an operator would, which must find nothing left), and tokens
// made before the rotation still detokenize: their payments were
// authorized after it.
func (s *stack) checkRotation(rotatedAt time.Time, flows []flow) []string {
	var v []string
	if rotatedAt.IsZero() {
		return []string{"the KEK was not rotated"}
	}
	old, oldPaid := 0, 0
	for _, f := range flows {
		if f.ans[0].label == want[0] && f.ans[0].at.Before(rotatedAt) {
			old++
			if f.ans[1].label == want[1] && f.ans[1].at.After(rotatedAt) {
				oldPaid++
			}
		}
	}
	s.note("%d tokens made before the rotation; %d of them authorized after it (detokenized with DEKs wrapped under the old KEK version, or rewrapped)", old, oldPaid)
	if old == 0 || oldPaid != old {
		v = append(v, fmt.Sprintf("KEK rotation: %d of the %d tokens made before the rotation were authorized after it, want all (and at least one)", oldPaid, old))
	}
	var status string
	err := testenv.WaitFor(60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := s.keys(ctx, "status")
		status = out
		if err != nil {
			return err
		}
		if !strings.Contains(out, "Every DEK is wrapped under the latest KEK version") {
			return errors.New("DEKs still under an older KEK version")
		}
		return nil
	})
	if err != nil {
		v = append(v, fmt.Sprintf("KEK rotation: not every DEK rewrapped to the latest version within 60 s: %v\n%s", err, status))
	} else if line, _, _ := strings.Cut(status, "\n"); line != "" {
		s.note("after the load: %s", line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := s.keys(ctx, "rewrap")
	if err != nil {
		v = append(v, "obol keys rewrap: "+err.Error())
	} else {
		s.note("obol keys rewrap: %s", strings.TrimSpace(lastLine(out)))
	}
	return v
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// checkCVCLostOnlyByFailedAttempts: a CVC is used once, so a CVC that an
// interrupted authorization took (a GETDEL whose answer the failover lost,
// or whose deletion no replica acknowledged) is not sent by the retry: that
// payment reaches the acquirer without it. The census counts those (the
// report prints them); it is a violation only for a payment whose first
// authorization attempt succeeded, since only a failed attempt can have
// taken the CVC.
func checkCVCLostOnlyByFailedAttempts(c *census, flows []flow) []string {
	var v []string
	for _, f := range flows {
		a := c.acqBy[f.paymentID]
		if a == nil || a.noCVC == 0 {
			continue
		}
		if f.ans[1].attempts <= 1 {
			v = append(v, fmt.Sprintf("redis failover: payment %s (key %s) reached the acquirer without its CVC though its first authorization attempt succeeded", f.paymentID, f.key))
		}
	}
	return v
}
