package hosted

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// maxReport bounds a CSP report body.
const maxReport = 16 << 10

// directives is the fixed label set of the violation counter; anything else
// counts as "other". Reports are attacker-controlled input: only the
// directive name, matched against this set, is ever logged or counted,
// never a URL, sample or source file (any of them could carry card data).
var directives = map[string]bool{
	"default-src": true, "script-src": true, "script-src-elem": true, "script-src-attr": true,
	"style-src": true, "style-src-elem": true, "style-src-attr": true, "connect-src": true,
	"img-src": true, "font-src": true, "frame-src": true, "frame-ancestors": true,
	"form-action": true, "base-uri": true, "worker-src": true, "media-src": true, "object-src": true,
}

// cspReport accepts violation reports in both browser formats
// (application/csp-report from report-uri, application/reports+json from
// report-to), counts them by directive and logs a PAN-free line.
func (h *Handler) cspReport(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReport))
	if err != nil {
		h.reports.Inc()
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	found := parseReports(r.Header.Get("Content-Type"), b)
	if found == nil {
		h.reports.Inc()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, d := range found {
		h.violations.WithLabelValues(d).Inc()
		h.log.WarnContext(r.Context(), "hosted fields: CSP violation reported", "directive", d)
	}
	w.WriteHeader(http.StatusNoContent)
}

// parseReports returns the violated directives (from the fixed set, else
// "other"), or nil when the body is no CSP report.
func parseReports(contentType string, b []byte) []string {
	ct := strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0])
	switch ct {
	case "application/csp-report", "application/json":
		var rep struct {
			Report *struct {
				Effective string `json:"effective-directive"`
				Violated  string `json:"violated-directive"`
			} `json:"csp-report"`
		}
		if json.Unmarshal(b, &rep) != nil || rep.Report == nil {
			return nil
		}
		d := rep.Report.Effective
		if d == "" {
			d, _, _ = strings.Cut(rep.Report.Violated, " ")
		}
		return []string{label(d)}
	case "application/reports+json":
		var reps []struct {
			Type string `json:"type"`
			Body struct {
				Effective string `json:"effectiveDirective"`
			} `json:"body"`
		}
		if json.Unmarshal(b, &reps) != nil {
			return nil
		}
		out := []string{}
		for _, rp := range reps {
			if rp.Type == "csp-violation" {
				out = append(out, label(rp.Body.Effective))
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return nil
}

func label(d string) string {
	if directives[d] {
		return d
	}
	return "other"
}
