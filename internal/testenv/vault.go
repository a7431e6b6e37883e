package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// VaultVersion is the HashiCorp Vault release the harness builds.
const VaultVersion = "v1.21.0"

// VaultBinary returns the path of a vault binary: $OBOL_VAULT_BIN, else the
// cached build under ${XDG_CACHE_HOME:-$HOME/.cache}/obol/, building it from
// the tools module in internal/testenv/vaultbin when missing (several
// minutes and ~4.5 GB of module downloads the first time).
func VaultBinary(tb TB) string {
	tb.Helper()
	p, err := vaultBinary()
	if err != nil {
		tb.Fatalf("vault binary: %v", err)
	}
	return p
}

// VaultBinaryPath is where the cached binary lives.
func VaultBinaryPath() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "obol", "vault-"+VaultVersion)
}

var vaultBinary = sync.OnceValues(func() (string, error) {
	if p := os.Getenv("OBOL_VAULT_BIN"); p != "" {
		return p, nil
	}
	dst := VaultBinaryPath()
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	// Serialize concurrent builders (test packages run in parallel).
	lock, err := os.OpenFile(dst+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	_, self, _, _ := runtime.Caller(0)
	src := filepath.Join(filepath.Dir(self), "vaultbin")
	cmd := exec.Command("go", "build", "-mod=mod", "-trimpath", "-o", dst+".tmp", ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build vault %s in %s: %w\n%s", VaultVersion, src, err, lastLines(string(out), 30))
	}
	return dst, os.Rename(dst+".tmp", dst)
})

// Vault is a running Vault dev server (in-memory storage, root token).
type Vault struct {
	Addr      string
	Token     string
	unsealKey string
	proc      *process
}

// StartVault starts a dedicated Vault dev server for this test.
func StartVault(tb TB) *Vault {
	tb.Helper()
	v, err := startVault(VaultBinary(tb), tb.TempDir())
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(v.proc.stop)
	return v
}

var sharedVault = sync.OnceValues(func() (*Vault, error) {
	if addr := os.Getenv("OBOL_TEST_VAULT_ADDR"); addr != "" {
		return &Vault{Addr: addr, Token: os.Getenv("OBOL_TEST_VAULT_TOKEN")}, nil
	}
	bin, err := vaultBinary()
	if err != nil {
		return nil, err
	}
	dir, err := sharedDir()
	if err != nil {
		return nil, err
	}
	d, err := os.MkdirTemp(dir, "vault-")
	if err != nil {
		return nil, err
	}
	v, err := startVault(bin, d)
	if err != nil {
		return nil, err
	}
	atExit(v.proc.stop)
	return v, nil
})

// SharedVault returns the Vault shared by this test binary.
func SharedVault(tb TB) *Vault {
	tb.Helper()
	v, err := sharedVault()
	if err != nil {
		tb.Fatalf("shared vault: %v", err)
	}
	return v
}

var unsealRe = regexp.MustCompile(`Unseal Key: (\S+)`)

func startVault(bin, dir string) (*Vault, error) {
	port := 0
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port = freePortNoTB()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		p, err := startProcess(bin, []string{"server", "-dev", "-dev-listen-address=" + addr, "-dev-root-token-id=root", "-dev-no-store-token"},
			[]string{"HOME=" + dir, "VAULT_LOG_LEVEL=warn", "SKIP_SETCAP=1"}, dir)
		if err != nil {
			return nil, err
		}
		v := &Vault{Addr: "http://" + addr, Token: "root", proc: p}
		err = WaitFor(30*time.Second, func() error {
			if !p.running() {
				return errNotRunning
			}
			if m := unsealRe.FindStringSubmatch(p.out.String()); m != nil {
				v.unsealKey = m[1]
			}
			if v.unsealKey == "" {
				return fmt.Errorf("no unseal key printed yet")
			}
			return httpOK(v.Addr + "/v1/sys/health")
		})
		if err == nil {
			return v, nil
		}
		lastErr = fmt.Errorf("vault did not start: %w\n%s", err, lastLines(p.out.String(), 20))
		p.stop()
	}
	return nil, lastErr
}

func (v *Vault) call(method, path string, body any) (int, []byte, error) {
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, v.Addr+"/v1/"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-Vault-Token", v.Token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), nil
}

// Do calls the Vault API with the root token and fails the test on a status
// of 300 or more. It returns the decoded body.
func (v *Vault) Do(tb TB, method, path string, body any) map[string]any {
	tb.Helper()
	code, b, err := v.call(method, path, body)
	if err != nil || code >= 300 {
		tb.Fatalf("vault %s %s: HTTP %d %s %v", method, path, code, b, err)
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// Call calls the Vault API with the root token and returns the status and
// decoded body, whatever the status.
func (v *Vault) Call(tb TB, method, path string, body any) (int, map[string]any) {
	tb.Helper()
	code, b, err := v.call(method, path, body)
	if err != nil {
		tb.Fatalf("vault %s %s: %v", method, path, err)
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return code, out
}

// Seal seals Vault for real (sys/seal).
func (v *Vault) Seal(tb TB) {
	tb.Helper()
	v.Do(tb, http.MethodPut, "sys/seal", nil)
}

// Unseal unseals it with the dev server's unseal key.
func (v *Vault) Unseal(tb TB) {
	tb.Helper()
	if v.unsealKey == "" {
		tb.Fatalf("this Vault was not started by the harness; cannot unseal")
	}
	v.Do(tb, http.MethodPut, "sys/unseal", map[string]string{"key": v.unsealKey})
}

// Pause stops the Vault process (SIGSTOP): connections hang, as with a
// network partition. Resume continues it.
func (v *Vault) Pause(tb TB) {
	tb.Helper()
	if err := syscall.Kill(v.proc.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		tb.Fatalf("pause vault: %v", err)
	}
}

// Resume continues a paused Vault.
func (v *Vault) Resume(tb TB) {
	tb.Helper()
	if err := syscall.Kill(v.proc.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		tb.Fatalf("resume vault: %v", err)
	}
}
