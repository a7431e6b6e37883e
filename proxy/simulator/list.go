package simulator

import (
	"net/http"
	"sync/atomic"
)

// Listing is the answer of GET /v1/authorizations: every authorization the
// simulator holds (brand and last four digits only, never a card number),
// oldest first, and the requests each route received. It is how tests and
// the crash drills (proxy/drill) count what reached the acquirer.
type Listing struct {
	Authorizations []Authorization  `json:"authorizations"`
	Requests       map[string]int64 `json:"requests"`
}

// list serves GET /v1/authorizations (read-only).
func (s *Simulator) list(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := Listing{Authorizations: make([]Authorization, 0, len(s.auths)), Requests: map[string]int64{}}
	for _, a := range s.sortedAuths() {
		out.Authorizations = append(out.Authorizations, *a)
	}
	s.mu.Unlock()
	s.requests.Range(func(k, v any) bool {
		out.Requests[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	writeJSON(w, http.StatusOK, out)
}

// AuthorizationsFor returns every authorization made for a reference (the
// gateway's payment id), for tests that check that none is left live.
func (s *Simulator) AuthorizationsFor(reference string) []Authorization {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Authorization
	for _, a := range s.sortedAuths() {
		if a.Reference == reference {
			out = append(out, *a)
		}
	}
	return out
}
