// Package servicetoken checks the bearer token that service-to-service and
// operator calls carry (riskd, ledgerd), in constant time. PAN-free.
package servicetoken

import (
	"context"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc/metadata"
)

// Valid reports whether the call's "authorization" metadata is
// "Bearer <want>". An empty want never matches.
func Valid(ctx context.Context, want string) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get("authorization")
	if len(v) == 0 || want == "" {
		return false
	}
	got, ok := strings.CutPrefix(v[0], "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
