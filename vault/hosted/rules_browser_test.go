package hosted

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/obolpay/obol/internal/testenv"
)

// TestRulesMatchServerInBrowser runs vault/card's shared table of validation
// cases through the frames' rules.js in real Chromium: every case must give
// the server's code, field and brand (vault/card's TestValidationCasesShared
// checks the Go side against the same rows).
func TestRulesMatchServerInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	raw, err := os.ReadFile("../card/testdata/validation_cases.json")
	require.NoError(t, err)
	var table struct {
		Now   string            `json:"now"`
		Cases []json.RawMessage `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(raw, &table))
	src, ok := New(Options{}).Asset(Version + "/rules.js")
	require.True(t, ok)

	ctx := testenv.Chromium(t)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	type result struct {
		Name  string `json:"name"`
		Code  string `json:"code"`
		Field string `json:"field"`
		Brand string `json:"brand"`
	}
	script := string(src) + `
;(function () {
  var t = ` + string(raw) + `;
  var now = new Date(t.now);
  return t.cases.map(function (c) {
    var e = ObolRules.validate(c, now);
    return { name: c.name, code: e ? e.code : '', field: e ? e.field : '', brand: e ? '' : ObolRules.brand(ObolRules.digits(c.number)) };
  });
})()`
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("about:blank")))
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]result](script))
	require.NoError(t, err)
	require.Len(t, got, len(table.Cases))
	for i, c := range table.Cases {
		var want struct {
			Name, Code, Field, Brand string
		}
		require.NoError(t, json.Unmarshal(c, &want))
		t.Run(want.Name, func(t *testing.T) {
			require.Equal(t, want.Name, got[i].Name)
			require.Equal(t, want.Code, got[i].Code, "code")
			require.Equal(t, want.Field, got[i].Field, "field")
			require.Equal(t, want.Brand, got[i].Brand, "brand")
		})
	}
}
