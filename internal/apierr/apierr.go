// Package apierr defines Obol's public error model: one stable machine code,
// a human message, the offending field, and a kind that maps to exactly one
// HTTP status and one gRPC code. It is PAN-free: messages are written by Obol
// and never echo request values; internal causes are kept for logging only.
package apierr

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

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

// kindCount is one past the last Kind; every Kind below it has a row in
// kindTable (TestKindTable checks it).
const kindCount = KindGatewayTimeout + 1

// kindTable is the one place a Kind gets its HTTP status and gRPC code, and
// its name: the name travels in the ErrorInfo of a gRPC status, so that
// kinds sharing a gRPC code (503 and 502 are both Unavailable, 413 and 429
// both ResourceExhausted) survive a hop between services.
var kindTable = [kindCount]struct {
	name string
	http int
	grpc codes.Code
}{
	KindInternal:           {"internal", http.StatusInternalServerError, codes.Internal},
	KindInvalidArgument:    {"invalid_argument", http.StatusBadRequest, codes.InvalidArgument},
	KindNotFound:           {"not_found", http.StatusNotFound, codes.NotFound},
	KindUnauthenticated:    {"unauthenticated", http.StatusUnauthorized, codes.Unauthenticated},
	KindPermissionDenied:   {"permission_denied", http.StatusForbidden, codes.PermissionDenied},
	KindConflict:           {"conflict", http.StatusConflict, codes.AlreadyExists},
	KindTooLarge:           {"too_large", http.StatusRequestEntityTooLarge, codes.ResourceExhausted},
	KindUnavailable:        {"unavailable", http.StatusServiceUnavailable, codes.Unavailable},
	KindFailedPrecondition: {"failed_precondition", http.StatusConflict, codes.FailedPrecondition},
	KindRateLimited:        {"rate_limited", http.StatusTooManyRequests, codes.ResourceExhausted},
	KindMethodNotAllowed:   {"method_not_allowed", http.StatusMethodNotAllowed, codes.Unimplemented},
	KindBadGateway:         {"bad_gateway", http.StatusBadGateway, codes.Unavailable},
	KindGatewayTimeout:     {"gateway_timeout", http.StatusGatewayTimeout, codes.DeadlineExceeded},
}

// codeKind is the Kind for a gRPC status that carries no Obol kind (a status
// made by grpc-go itself, or by a non-Obol peer): one explicit row per code,
// never a search, so the answer is the same every time.
var codeKind = map[codes.Code]Kind{
	codes.OK:                 KindInternal, // an error with code OK is a bug
	codes.Canceled:           KindUnavailable,
	codes.Unknown:            KindInternal,
	codes.InvalidArgument:    KindInvalidArgument,
	codes.DeadlineExceeded:   KindUnavailable, // our call timed out: retry later
	codes.NotFound:           KindNotFound,
	codes.AlreadyExists:      KindConflict,
	codes.PermissionDenied:   KindPermissionDenied,
	codes.ResourceExhausted:  KindTooLarge, // grpc-go's message size limit
	codes.FailedPrecondition: KindFailedPrecondition,
	codes.Aborted:            KindConflict,
	codes.OutOfRange:         KindInvalidArgument,
	codes.Unimplemented:      KindMethodNotAllowed,
	codes.Internal:           KindInternal,
	codes.Unavailable:        KindUnavailable,
	codes.DataLoss:           KindInternal,
	codes.Unauthenticated:    KindUnauthenticated,
}

// kindByName resolves the kind name carried in an ErrorInfo.
func kindByName(name string) (Kind, bool) {
	for k := Kind(0); k < kindCount; k++ {
		if kindTable[k].name == name {
			return k, true
		}
	}
	return 0, false
}

// String is the kind's stable name.
func (k Kind) String() string {
	if k >= 0 && k < kindCount {
		return kindTable[k].name
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// row is the table row for k; an unknown kind is treated as internal.
func (k Kind) row() (int, codes.Code) {
	if k < 0 || k >= kindCount {
		k = KindInternal
	}
	return kindTable[k].http, kindTable[k].grpc
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
	// RetryAfter, when set, says when to retry (a 429's Retry-After); it
	// travels in the ErrorInfo between services.
	RetryAfter time.Duration
	Cause      error
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
func (e *Error) HTTPStatus() int { h, _ := e.Kind.row(); return h }

// GRPCCode is the gRPC code for the error's kind.
func (e *Error) GRPCCode() codes.Code { _, c := e.Kind.row(); return c }

// GRPCStatus lets grpc-go convert the error to a status carrying an ErrorInfo
// with the machine code and field. Only public parts are included.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.GRPCCode(), e.Message)
	info := &errdetails.ErrorInfo{Reason: e.Code, Domain: Domain, Metadata: map[string]string{metaKind: e.Kind.String()}}
	if e.Field != "" {
		info.Metadata[metaField] = e.Field
	}
	if e.RetryAfter > 0 {
		info.Metadata[metaRetryAfter] = e.RetryAfterSeconds()
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

// ErrorInfo metadata keys.
const (
	metaField      = "field"
	metaKind       = "kind"
	metaRetryAfter = "retry_after_seconds"
)

// RetryAfterSeconds is the Retry-After value: whole seconds, rounded up,
// at least 1 ("" when RetryAfter is not set).
func (e *Error) RetryAfterSeconds() string {
	if e.RetryAfter <= 0 {
		return ""
	}
	return strconv.FormatInt(max(1, int64((e.RetryAfter+time.Second-1)/time.Second)), 10)
}

// FromStatus rebuilds a public error from a gRPC status received from another
// Obol service, so codes survive a hop between services. The kind comes from
// the status' Obol ErrorInfo when it names one, else from codeKind.
func FromStatus(st *status.Status) *Error {
	e := &Error{Code: CodeInternal, Message: st.Message(), Kind: KindInternal}
	if k, ok := codeKind[st.Code()]; ok {
		e.Kind = k
	}
	if st.Code() == codes.DeadlineExceeded || st.Code() == codes.Canceled || st.Code() == codes.Unavailable {
		e.Code = CodeUnavailable
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == Domain {
			e.Code = info.Reason
			e.Field = info.Metadata[metaField]
			if n, err := strconv.ParseInt(info.Metadata[metaRetryAfter], 10, 32); err == nil && n > 0 {
				e.RetryAfter = time.Duration(n) * time.Second
			}
			if k, ok := kindByName(info.Metadata[metaKind]); ok {
				e.Kind = k
			}
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
	ErrIdempotencyKeyReused = New(KindConflict, CodeIdempotencyKeyReused, "Idempotency-Key", "this Idempotency-Key was already used with a different request")
	// ErrIdempotencyInProgress: the first request with this key has not finished.
	ErrIdempotencyInProgress = New(KindConflict, CodeIdempotencyInProgress, "Idempotency-Key", "a request with this Idempotency-Key is still in progress; retry later")
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
