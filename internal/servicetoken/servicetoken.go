// Package servicetoken checks the bearer token that service-to-service and
// operator calls carry (riskd, ledgerd, eventsd), in constant time.
// PAN-free.
package servicetoken

import (
	"context"
	"crypto/subtle"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/obolpay/obol/internal/apierr"
)

// Required is the typed error a call to service without its token gets.
func Required(service string) error {
	return apierr.New(apierr.KindUnauthenticated, apierr.CodeUnauthenticated, "authorization", "the "+service+" service token is required (Authorization: Bearer …)")
}

// Check returns unauthenticated unless the call carries want (see Valid).
func Check(ctx context.Context, want string, unauthenticated error) error {
	if !Valid(ctx, want) {
		return unauthenticated
	}
	return nil
}

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
