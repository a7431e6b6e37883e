package testenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// ChromiumPath finds Debian's chromium (deploy/scripts/test.sh installs it
// when missing); OBOL_TEST_CHROMIUM overrides. Never a downloaded build.
func ChromiumPath() (string, bool) {
	if p := os.Getenv("OBOL_TEST_CHROMIUM"); p != "" {
		return p, true
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// Chromium starts a headless Chromium with a fresh profile (the flags a
// root user on a closed network needs) and returns a context for one tab;
// the browser is stopped at cleanup. Tests that need it fail, not skip,
// when Chromium is missing: the test command installs it.
func Chromium(t testing.TB) context.Context {
	t.Helper()
	path, ok := ChromiumPath()
	if !ok {
		t.Fatal("chromium not found: apt-get install chromium (deploy/scripts/test.sh does), or set OBOL_TEST_CHROMIUM")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(900, 700),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium-profile")),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// Start the browser now, so a broken install fails here and clearly
	// (no timeout on this first call: it would stop the browser).
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// ArtifactDir is where browser tests keep screenshots: OBOL_TEST_ARTIFACTS,
// else a directory under the system temp dir (outside the repository).
func ArtifactDir(t testing.TB, name string) string {
	t.Helper()
	base := os.Getenv("OBOL_TEST_ARTIFACTS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "obol-test-artifacts")
	}
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
