// Package apierr defines Obol's public error model: one stable machine code,
// a human message, the offending field, and a kind that maps to exactly one
// HTTP status and one gRPC code. It is PAN-free: messages are written by Obol
// and never echo request values; internal causes are kept for logging only.
package apierr

import (
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Kind classifies an error for transport mapping.
type Kind int

// Kinds of public errors. Each maps to one HTTP status and one gRPC code in
// kindTable below, and nowhere else.
const (
	KindInternal Kind = iota
	KindInvalidArgument
	KindNotFound
	KindUnauthenticated
	KindPermissionDenied
	KindConflict
	KindTooLarge
	KindUnavailable
	KindFailedPrecondition
	KindRateLimited
	KindMethodNotAllowed
	// KindBadGateway and KindGatewayTimeout: an upstream the gateway
	// forwards to failed or did not answer in time.
	KindBadGateway
	KindGatewayTimeout
)

var kindTable = map[Kind]struct {
	http int
	grpc codes.Code
}{
	KindInternal:           {http.StatusInternalServerError, codes.Internal},
	KindInvalidArgument:    {http.StatusBadRequest, codes.InvalidArgument},
	KindNotFound:           {http.StatusNotFound, codes.NotFound},
	KindUnauthenticated:    {http.StatusUnauthorized, codes.Unauthenticated},
	KindPermissionDenied:   {http.StatusForbidden, codes.PermissionDenied},
	KindConflict:           {http.StatusConflict, codes.AlreadyExists},
	KindTooLarge:           {http.StatusRequestEntityTooLarge, codes.ResourceExhausted},
	KindUnavailable:        {http.StatusServiceUnavailable, codes.Unavailable},
	KindFailedPrecondition: {http.StatusConflict, codes.FailedPrecondition},
	KindRateLimited:        {http.StatusTooManyRequests, codes.ResourceExhausted},
	KindMethodNotAllowed:   {http.StatusMethodNotAllowed, codes.Unimplemented},
	KindBadGateway:         {http.StatusBadGateway, codes.Unavailable},
	KindGatewayTimeout:     {http.StatusGatewayTimeout, codes.DeadlineExceeded},
}

// Domain is the ErrorInfo domain for every Obol error.
const Domain = "obol.dev"

// Error is a public error. Code, Message and Field are safe to return to a
// client; Cause is for logs only and never leaves the process.
type Error struct {
	Kind    Kind
	Code    string
	Message string
	Field   string
	Cause   error
}

// New returns a public error without an internal cause.
func New(kind Kind, code, field, message string) *Error {
	return &Error{Kind: kind, Code: code, Field: field, Message: message}
}

// Wrap returns a public error carrying an internal cause for logs.
func Wrap(kind Kind, code, message string, cause error) *Error {
	return &Error{Kind: kind, Code: code, Message: message, Cause: cause}
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s (%s): %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap exposes the internal cause to errors.Is/As inside the process.
func (e *Error) Unwrap() error { return e.Cause }

// Is matches two public errors by code, so sentinel values work with errors.Is.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Kind == e.Kind
}

// HTTPStatus is the HTTP status for the error's kind.
func (e *Error) HTTPStatus() int { return kindTable[e.Kind].http }

// GRPCCode is the gRPC code for the error's kind.
func (e *Error) GRPCCode() codes.Code { return kindTable[e.Kind].grpc }

// GRPCStatus lets grpc-go convert the error to a status carrying an ErrorInfo
// with the machine code and field. Only public parts are included.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.GRPCCode(), e.Message)
	info := &errdetails.ErrorInfo{Reason: e.Code, Domain: Domain}
	if e.Field != "" {
		info.Metadata = map[string]string{"field": e.Field}
	}
	if withDetails, err := st.WithDetails(info); err == nil {
		return withDetails
	}
	return st
}

// From returns the public error inside err, or a generic internal error that
// wraps err (whose text is then never shown to a client).
func From(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return FromStatus(st)
	}
	return Wrap(KindInternal, CodeInternal, "internal error", err)
}

// FromStatus rebuilds a public error from a gRPC status received from another
// Obol service, so codes survive a hop between services.
func FromStatus(st *status.Status) *Error {
	e := &Error{Code: CodeInternal, Message: st.Message(), Kind: KindInternal}
	for k, v := range kindTable {
		if v.grpc == st.Code() {
			e.Kind = k
			break
		}
	}
	switch st.Code() {
	case codes.ResourceExhausted:
		e.Kind = KindTooLarge
	case codes.AlreadyExists:
		e.Kind = KindConflict
	case codes.DeadlineExceeded:
		e.Kind = KindUnavailable
		e.Code = CodeUnavailable
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == Domain {
			e.Code = info.Reason
			e.Field = info.Metadata["field"]
		}
	}
	return e
}

// Stable machine codes shared by every service. Services add their own next to
// their handlers; these are the cross-cutting ones.
const (
	CodeInternal              = "internal_error"
	CodeUnavailable           = "service_unavailable"
	CodeKeyServiceUnavailable = "key_service_unavailable"
	CodeStorageUnavailable    = "storage_unavailable"
	CodeUnauthenticated       = "unauthenticated"
	CodePermissionDenied      = "permission_denied"
	CodeFieldRequired         = "field_required"
	CodeUnknownField          = "unknown_field"
	CodeMalformedBody         = "malformed_body"
	CodeBodyTooLarge          = "body_too_large"
	CodeIdempotencyKeyReused  = "idempotency_key_reused"
	CodeIdempotencyKeyInvalid = "idempotency_key_invalid"
	CodeIdempotencyInProgress = "idempotency_request_in_progress"
	CodeNotFound              = "not_found"
	CodeMethodNotAllowed      = "method_not_allowed"
)

// Sentinel errors for cross-cutting failures. Compare with errors.Is.
var (
	// ErrKeyServiceUnavailable: the key manager (Vault) is sealed, down or refusing.
	ErrKeyServiceUnavailable = New(KindUnavailable, CodeKeyServiceUnavailable, "", "the key service is unavailable; nothing was stored, retry later")
	// ErrStorageUnavailable: PostgreSQL, SQLite or Redis is down or refusing.
	ErrStorageUnavailable = New(KindUnavailable, CodeStorageUnavailable, "", "storage is unavailable; nothing was stored, retry later")
	// ErrUnauthenticated: missing or unknown API key.
	ErrUnauthenticated = New(KindUnauthenticated, CodeUnauthenticated, "authorization", "a valid API key is required (Authorization: Bearer sk_...)")
	// ErrIdempotencyKeyReused: same Idempotency-Key, different request.
	ErrIdempotencyKeyReused = New(KindConflict, CodeIdempotencyKeyReused, "idempotency_key", "this Idempotency-Key was already used with a different request")
	// ErrIdempotencyInProgress: the first request with this key has not finished.
	ErrIdempotencyInProgress = New(KindConflict, CodeIdempotencyInProgress, "idempotency_key", "a request with this Idempotency-Key is still in progress; retry later")
)

// KeyServiceUnavailable wraps a key-manager failure as the public 503.
func KeyServiceUnavailable(cause error) *Error {
	e := *ErrKeyServiceUnavailable
	e.Cause = cause
	return &e
}

// StorageUnavailable wraps a storage failure as the public 503.
func StorageUnavailable(cause error) *Error {
	e := *ErrStorageUnavailable
	e.Cause = cause
	return &e
}

// Invalid is shorthand for an invalid-argument error naming a field.
func Invalid(code, field, message string) *Error {
	return New(KindInvalidArgument, code, field, message)
}
