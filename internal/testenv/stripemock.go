package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// StripeMockVersion is the stripe-mock the suite runs; the README's test
// command (deploy/scripts/test.sh) installs it with go install.
const StripeMockVersion = "v0.203.0"

var sharedStripeMock = sync.OnceValues(func() (string, error) {
	if url := os.Getenv("OBOL_TEST_STRIPE_MOCK_URL"); url != "" {
		return url, nil
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	bin, err := findBin("stripe-mock", filepath.Join(strings.TrimSpace(string(gopath)), "bin"))
	if err != nil {
		return "", fmt.Errorf("%w: install it (go install github.com/stripe/stripe-mock@%s) or set OBOL_TEST_STRIPE_MOCK_URL", err, StripeMockVersion)
	}
	port := freePortNoTB()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	dir, err := sharedDir()
	if err != nil {
		return "", err
	}
	// stripe-mock also serves HTTPS, on :12112 unless told otherwise: give
	// it a free port too, so two test binaries never collide on it.
	httpsAddr := "127.0.0.1:" + strconv.Itoa(freePortNoTB())
	p, err := startProcess(bin, []string{"-http-addr", addr, "-https-addr", httpsAddr}, nil, dir)
	if err != nil {
		return "", err
	}
	atExit(p.stop)
	if err := WaitFor(30*time.Second, func() error {
		if !p.running() {
			return errNotRunning
		}
		return tcpOK(addr)
	}); err != nil {
		return "", fmt.Errorf("stripe-mock did not start: %w\n%s", err, lastLines(p.out.String(), 20))
	}
	return "http://" + addr, nil
})

// StripeMock returns the base URL of the stripe-mock shared by this test
// binary: OBOL_TEST_STRIPE_MOCK_URL, or stripe-mock started once on a free
// loopback port. It validates every request against Stripe's OpenAPI spec
// (its answers are fixtures).
func StripeMock(tb TB) string {
	tb.Helper()
	url, err := sharedStripeMock()
	if err != nil {
		tb.Fatalf("stripe-mock: %v", err)
	}
	return url
}
