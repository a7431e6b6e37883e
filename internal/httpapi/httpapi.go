// Package httpapi is the REST edge shared by Obol's services: a grpc-gateway
// mux whose request headers are checked before they become gRPC metadata
// (nothing a client sent is silently dropped), whose JSON decoding is strict (unknown fields and wrong types are typed
// errors naming the field), 64-bit integers written as JSON numbers (not
// protojson's strings; see Int64sAsNumbers), a request body limit, and the one place that
// writes an error as JSON with its HTTP status. It is PAN-free: it never puts
// a request value into an error or a log line (decoder messages can echo
// values, so they are never logged or returned).
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/obolpay/obol/internal/cardtext"
	"github.com/obolpay/obol/internal/idemkey"
)

// DefaultMaxBody is the default request body limit (16 KiB).
const DefaultMaxBody = 16 << 10

// ErrorBody is the JSON shape of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the public part of an apierr.Error.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// WriteError writes e with its HTTP status (and its Retry-After, when it
// has one). Only public fields are written.
func WriteError(w http.ResponseWriter, e *apierr.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if ra := e.RetryAfterSeconds(); ra != "" {
		w.Header().Set("Retry-After", ra)
	}
	w.WriteHeader(e.HTTPStatus())
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: ErrorDetail{Code: e.Code, Message: e.Message, Field: e.Field}})
}

// body holds a request body read under the limit, and the typed error the
// strict decoder found, for the error handler to pick up.
type body struct {
	*bytes.Reader
	err *apierr.Error
}

func (b *body) Close() error { return nil }

// LimitBody reads at most max bytes of the body up front; a larger body is a
// 413 body_too_large and the handler never runs.
func LimitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		tooLarge := apierr.New(apierr.KindTooLarge, apierr.CodeBodyTooLarge, "body", fmt.Sprintf("request body exceeds %d bytes", max))
		if r.ContentLength > max {
			WriteError(w, tooLarge)
			return
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
		if err != nil {
			WriteError(w, apierr.Invalid(apierr.CodeMalformedBody, "body", "request body could not be read"))
			return
		}
		if int64(len(b)) > max {
			WriteError(w, tooLarge)
			return
		}
		r.Body = &body{Reader: bytes.NewReader(b)}
		next.ServeHTTP(w, r)
	})
}

// Marshaler is protojson with snake_case names and strict decoding, except
// that 64-bit integers are written as JSON numbers (Int64sAsNumbers), not
// strings. Requests may send them either way.
type Marshaler struct {
	runtime.JSONPb
}

// Marshal writes v as protojson with 64-bit integers as JSON numbers.
func (m *Marshaler) Marshal(v any) ([]byte, error) {
	b, err := m.JSONPb.Marshal(v)
	if err != nil {
		return nil, err
	}
	msg, ok := v.(proto.Message)
	if !ok {
		return b, nil
	}
	return Int64sAsNumbers(b, msg.ProtoReflect().Descriptor())
}

// NewEncoder returns an encoder that writes like Marshal, one value a line.
func (m *Marshaler) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		b, err := m.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, m.Delimiter()...))
		return err
	})
}

// NewMarshaler returns the marshaler every Obol REST mux uses.
func NewMarshaler() *Marshaler {
	return &Marshaler{JSONPb: runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
}

// NewDecoder returns a decoder that checks the JSON against the target
// message's schema before protojson sees it.
func (m *Marshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		raw, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			return io.EOF
		}
		msg, ok := v.(proto.Message)
		if !ok {
			return json.Unmarshal(raw, v)
		}
		fail := func(e *apierr.Error) error {
			if b, ok := r.(*body); ok {
				b.err = e
			}
			return e
		}
		if e := CheckJSON(raw, msg.ProtoReflect().Descriptor()); e != nil {
			return fail(e)
		}
		if err := m.UnmarshalOptions.Unmarshal(raw, msg); err != nil {
			return fail(apierr.Invalid(apierr.CodeMalformedBody, "body", "request body does not match the expected JSON shape"))
		}
		return nil
	})
}

// CheckJSON validates raw JSON against a message descriptor: it must be an
// object whose keys are known fields (proto or JSON names) and whose values
// have the field's JSON type. Errors name the field path and never include
// a value.
func CheckJSON(raw []byte, md protoreflect.MessageDescriptor) *apierr.Error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return apierr.Invalid(apierr.CodeMalformedBody, "body", "request body is not valid JSON")
	}
	if dec.More() {
		return apierr.Invalid(apierr.CodeMalformedBody, "body", "request body has data after the JSON value")
	}
	return checkMessage(v, md, "")
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func checkMessage(v any, md protoreflect.MessageDescriptor, path string) *apierr.Error {
	if v == nil {
		return nil
	}
	if md.FullName().Parent() == "google.protobuf" {
		return nil // well-known types have their own JSON forms; protojson checks them
	}
	obj, ok := v.(map[string]any)
	if !ok {
		field := path
		if field == "" {
			field = "body"
		}
		return apierr.Invalid(apierr.CodeMalformedBody, field, "must be a JSON object")
	}
	for k, val := range obj {
		fd := md.Fields().ByName(protoreflect.Name(k))
		if fd == nil {
			fd = md.Fields().ByJSONName(k)
		}
		label := k
		if label == "" {
			label = `""` // an empty key still needs a visible name
		}
		p := join(path, label)
		if fd == nil {
			return apierr.Invalid(apierr.CodeUnknownField, p, "unknown field")
		}
		p = join(path, string(fd.Name()))
		if e := checkValue(val, fd, p); e != nil {
			return e
		}
	}
	return nil
}

func checkValue(v any, fd protoreflect.FieldDescriptor, path string) *apierr.Error {
	if v == nil {
		return nil
	}
	if fd.IsList() {
		arr, ok := v.([]any)
		if !ok {
			return apierr.Invalid(apierr.CodeMalformedBody, path, "must be a JSON array")
		}
		for _, el := range arr {
			if e := checkScalar(el, fd, path); e != nil {
				return e
			}
		}
		return nil
	}
	if fd.IsMap() {
		obj, ok := v.(map[string]any)
		if !ok {
			return apierr.Invalid(apierr.CodeMalformedBody, path, "must be a JSON object")
		}
		for _, el := range obj {
			if e := checkScalar(el, fd.MapValue(), path); e != nil {
				return e
			}
		}
		return nil
	}
	return checkScalar(v, fd, path)
}

func checkScalar(v any, fd protoreflect.FieldDescriptor, path string) *apierr.Error {
	bad := func(what string) *apierr.Error {
		return apierr.Invalid(apierr.CodeMalformedBody, path, "must be "+what)
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkMessage(v, fd.Message(), path)
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			return bad("a JSON string")
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			return bad("true or false")
		}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, ok := v.(json.Number)
		if !ok {
			if s, isStr := v.(string); isStr && (fd.Kind() == protoreflect.Int64Kind || fd.Kind() == protoreflect.Uint64Kind) {
				n, ok = json.Number(s), true
			}
		}
		if !ok || strings.ContainsAny(string(n), ".eE") {
			return bad("an integer")
		}
		if _, err := n.Int64(); err != nil {
			return bad("an integer in range")
		}
	case protoreflect.EnumKind:
		switch v.(type) {
		case string, json.Number:
		default:
			return bad("an enum name")
		}
	case protoreflect.BytesKind:
		if _, ok := v.(string); !ok {
			return bad("a base64 string")
		}
	}
	return nil
}

// forwarded are the request headers Obol services read, under their gRPC
// metadata names. Nothing else is forwarded: in particular not
// Grpc-Metadata-* (grpc-gateway's default), which would let a client send
// a second Authorization, Origin or Idempotency-Key under another name.
// (grpc-gateway forwards Authorization itself, as "authorization".)
var forwarded = map[string]string{
	"Idempotency-Key": idemkey.MD,
	"Origin":          "origin",
	"X-Request-Id":    "x-request-id",
}

// HeaderMatcher forwards the headers Obol services read as gRPC metadata,
// and grpc-gateway's permanent HTTP headers under its grpcgateway- prefix.
func HeaderMatcher(key string) (string, bool) {
	key = textproto.CanonicalMIMEHeaderKey(key)
	if md, ok := forwarded[key]; ok {
		return md, true
	}
	if strings.HasPrefix(key, runtime.MetadataHeaderPrefix) {
		return "", false
	}
	return runtime.DefaultHeaderMatcher(key)
}

// CheckHeaders refuses, before grpc-gateway maps headers to gRPC
// metadata, what that mapping would silently drop or make ambiguous: a
// forwarded header whose value is not printable ASCII (grpc-gateway skips
// such a value, so a retry's Idempotency-Key or a browser's Origin would
// vanish), a forwarded header sent twice, and a Grpc-Metadata-* header
// (not forwarded; refused rather than ignored), and a header that is one
// Obol reads spelt with underscores (Idempotency_Key). The Idempotency-Key gets
// its full check (internal/idemkey); every error names the header.
func CheckHeaders(r *http.Request) *apierr.Error {
	for name, vals := range r.Header {
		name = textproto.CanonicalMIMEHeaderKey(name)
		if strings.HasPrefix(name, runtime.MetadataHeaderPrefix) {
			return apierr.Invalid(CodeHeaderInvalid, name, "Grpc-Metadata-* headers are not accepted; send the header under its own name")
		}
		if alias := strings.ReplaceAll(name, "_", "-"); alias != name && readsAlias(alias) {
			// Idempotency_Key is not Idempotency-Key to grpc-gateway (nor
			// to a proxy in front): ignoring it would run a retry twice.
			return apierr.Invalid(CodeHeaderInvalid, name, "header names are spelt with dashes: send "+textproto.CanonicalMIMEHeaderKey(alias))
		}
		if name == idemkey.Header {
			if _, err := idemkey.Parse(vals); err != nil {
				return apierr.From(err)
			}
			continue
		}
		if _, ok := forwarded[name]; !ok && name != "Authorization" {
			continue
		}
		if len(vals) > 1 {
			return apierr.Invalid(CodeHeaderInvalid, name, name+" must be sent once")
		}
		for _, v := range vals {
			for i := 0; i < len(v); i++ {
				if v[i] < 0x20 || v[i] > 0x7e {
					return apierr.Invalid(CodeHeaderInvalid, name, name+" must be printable ASCII")
				}
			}
		}
	}
	return nil
}

// readsAlias reports whether name (underscores already turned into
// dashes) is, case aside, a header Obol reads.
func readsAlias(name string) bool {
	if strings.EqualFold(name, "Authorization") {
		return true
	}
	for h := range forwarded {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// CodeHeaderInvalid: a request header Obol reads is malformed.
const CodeHeaderInvalid = "header_invalid"

// checkHeaders is the mux middleware that runs CheckHeaders on every route.
func checkHeaders(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if e := CheckHeaders(r); e != nil {
			WriteError(w, e)
			return
		}
		next(w, r, params)
	}
}

// ErrorHandler writes gateway errors through WriteError. Internal causes are
// logged with the matched route template only (never the request's path,
// which can carry anything); decoder messages are never logged. Errors the
// grpc-gateway runtime makes itself (a path or query value it cannot parse)
// quote the value, so their message is replaced.
func ErrorHandler(log *slog.Logger) runtime.ErrorHandlerFunc {
	return func(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
		if b, ok := r.Body.(*body); ok && b.err != nil {
			WriteError(w, b.err)
			return
		}
		e := apierr.From(err)
		if ue, ok := unknownParameterError(err); ok {
			e = ue
		} else if runtimeError(err) {
			e = apierr.Invalid(CodeInvalidParameter, "", "a path or query parameter is invalid")
		}
		if e.Kind == apierr.KindInternal && e.Cause != nil {
			route, _ := runtime.HTTPPathPattern(ctx)
			log.ErrorContext(ctx, "internal error", "route", route, "err", e.Cause)
		}
		WriteError(w, e)
	}
}

// CodeInvalidParameter is the code of a path or query value that does not
// parse as its field's type.
const CodeInvalidParameter = "invalid_parameter"

// runtimeError reports a gRPC status that no Obol service made: it is not
// an *apierr.Error and carries no Obol ErrorInfo: grpc-gateway's own
// InvalidArgument for a parameter, whose message quotes the value.
func runtimeError(err error) bool {
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return false
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Domain == apierr.Domain {
			return false
		}
	}
	return true
}

// RoutingErrorHandler answers unknown routes and methods with typed errors.
func RoutingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, status int) {
	switch status {
	case http.StatusMethodNotAllowed:
		WriteError(w, apierr.New(apierr.KindMethodNotAllowed, apierr.CodeMethodNotAllowed, "", "method not allowed on this path"))
	case http.StatusNotFound:
		msg := "no such endpoint"
		if where := wrongAddress(r); where != "" {
			msg = "no such endpoint on this address: " + where
		}
		WriteError(w, apierr.New(apierr.KindNotFound, apierr.CodeNotFound, "", msg))
	default:
		runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, status)
	}
}

// NewMux returns a grpc-gateway mux configured the Obol way, plus extra
// options (internal/serve adds the annotator that labels metrics by route).
func NewMux(log *slog.Logger, extra ...runtime.ServeMuxOption) *runtime.ServeMux {
	return runtime.NewServeMux(append([]runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, NewMarshaler()),
		runtime.WithIncomingHeaderMatcher(HeaderMatcher),
		runtime.WithMiddlewares(checkHeaders),
		runtime.WithErrorHandler(ErrorHandler(log)),
		runtime.WithRoutingErrorHandler(RoutingErrorHandler),
		runtime.WithDisablePathLengthFallback(),
		runtime.SetQueryParameterParser(&strictQuery{}),
	}, extra...)...)
}

// CodeUnknownParameter is the code of a query parameter the call does not
// take.
const CodeUnknownParameter = "unknown_parameter"

// strictQuery is grpc-gateway's query parser, except that a query
// parameter naming no field of the request is refused (typed, naming it)
// rather than silently ignored: ?type=… for ?types=… would otherwise list
// everything.
type strictQuery struct{ runtime.DefaultQueryParser }

// maxParamName bounds a parameter name quoted in an error.
const maxParamName = 64

func (q *strictQuery) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	for key := range values {
		name := key
		if i := strings.IndexByte(name, '['); i >= 0 && strings.HasSuffix(name, "]") {
			name = name[:i] // map syntax: field[key]=value
		}
		if !knownField(msg.ProtoReflect().Descriptor(), strings.Split(name, ".")) {
			return unknownParameter(key)
		}
	}
	return q.DefaultQueryParser.Parse(msg, values, filter)
}

// knownField reports whether path names a field of md (by proto or JSON
// name), through singular message fields.
func knownField(md protoreflect.MessageDescriptor, path []string) bool {
	for i, name := range path {
		fd := md.Fields().ByTextName(name)
		if fd == nil {
			fd = md.Fields().ByJSONName(name)
		}
		if fd == nil {
			return false
		}
		if i == len(path)-1 {
			return true
		}
		if fd.Message() == nil || fd.Cardinality() == protoreflect.Repeated {
			return false
		}
		md = fd.Message()
	}
	return false
}

// unknownParameter names the parameter only when it is a plain, short
// field-like name (never quoting anything that could be a card number).
// The generated handlers turn a parser error into a plain InvalidArgument
// status with its text, so the refusal travels as a marked text that
// ErrorHandler turns back into the typed error.
func unknownParameter(key string) error {
	plain := len(key) <= maxParamName && !cardtext.Contains(key)
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.') {
			plain = false
			break
		}
	}
	if !plain {
		key = ""
	}
	return errors.New(unknownParamMark + key)
}

const unknownParamMark = "obol: unknown query parameter: "

// unknownParameterError is the typed form of unknownParameter's refusal.
func unknownParameterError(err error) (*apierr.Error, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), unknownParamMark) {
		return nil, false
	}
	key := strings.TrimPrefix(st.Message(), unknownParamMark)
	if key == "" {
		return apierr.Invalid(CodeUnknownParameter, "", "a query parameter is not one this call takes"), true
	}
	return apierr.Invalid(CodeUnknownParameter, key, "unknown query parameter "+key+": this call does not take it"), true
}
