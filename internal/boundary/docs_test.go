package boundary

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDocsStayInTheRepository: no file cites a document that someone who
// clones Obol does not have (the project's notes outside the repository),
// and every relative link of the top-level Markdown files resolves.
func TestDocsStayInTheRepository(t *testing.T) {
	root := filepath.Join("..", "..")
	outside := []string{"../" + "shared/", "DESIGN" + ".md"}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == ".git" || n == "node_modules" || n == ".obol" || n == "bin" {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".yaml", ".yml", ".csv", ".sh", ".js", ".ts", ".html", ".proto", ".hcl":
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, o := range outside {
			assert.NotContains(t, string(b), o, "%s cites a document outside the repository", path)
		}
		return nil
	})
	require.NoError(t, err)
	link := regexp.MustCompile(`\]\(([^)#:]+)(#[^)]*)?\)`)
	for _, md := range []string{"README.md", "ARCHITECTURE.md", "SECURITY.md", "ledger/README.md", "policies/README.md"} {
		b, err := os.ReadFile(filepath.Join(root, md))
		require.NoError(t, err)
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := filepath.Join(root, filepath.Dir(md), m[1])
			if strings.HasPrefix(m[1], "http") {
				continue
			}
			_, err := os.Stat(target)
			assert.NoError(t, err, "%s links to %s", md, m[1])
		}
	}
}
