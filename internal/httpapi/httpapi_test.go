package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/obolpay/obol/internal/apierr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// ErrorInfo has a string, a string and a map<string,string>: enough shape to
// exercise the checker without depending on an Obol API package.
var md = (&errdetails.ErrorInfo{}).ProtoReflect().Descriptor()

func TestCheckJSON(t *testing.T) {
	tests := []struct {
		name  string
		json  string
		code  string
		field string
	}{
		{"valid", `{"reason":"x","domain":"d","metadata":{"a":"b"}}`, "", ""},
		{"json name accepted", `{"reason":"x"}`, "", ""},
		{"null values", `{"reason":null,"metadata":null}`, "", ""},
		{"unknown field", `{"reason":"x","pan":"4242"}`, apierr.CodeUnknownField, "pan"},
		{"wrong type", `{"reason":42}`, apierr.CodeMalformedBody, "reason"},
		{"map value wrong type", `{"metadata":{"a":1}}`, apierr.CodeMalformedBody, "metadata"},
		{"not an object", `[1,2]`, apierr.CodeMalformedBody, "body"},
		{"syntax error", `{"reason":`, apierr.CodeMalformedBody, "body"},
		{"trailing data", `{"reason":"x"} {}`, apierr.CodeMalformedBody, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := CheckJSON([]byte(tt.json), md)
			if tt.code == "" {
				require.Nil(t, e)
				return
			}
			require.NotNil(t, e, "want code=%s field=%s", tt.code, tt.field)
			assert.Equal(t, tt.code, e.Code, "code")
			assert.Equal(t, tt.field, e.Field, "field")
			assert.NotContains(t, e.Message, "4242", "error echoes a value")
		})
	}
}

func TestCheckJSONWellKnownTypes(t *testing.T) {
	// Well-known types are left to protojson.
	assert.Nil(t, CheckJSON([]byte(`"2026-01-01T00:00:00Z"`), (&timestamppb.Timestamp{}).ProtoReflect().Descriptor()), "timestamp")
	assert.Nil(t, CheckJSON([]byte(`{"a":[1,{"b":null}]}`), (&structpb.Struct{}).ProtoReflect().Descriptor()), "struct")
	assert.Nil(t, CheckJSON([]byte(`"x"`), (&wrapperspb.StringValue{}).ProtoReflect().Descriptor()), "wrapper")
}

func TestLimitBody(t *testing.T) {
	var got int
	h := LimitBody(16, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got++ }))
	tests := []struct {
		name    string
		body    string
		chunked bool
		status  int
		reached bool
	}{
		{"small", "0123456789", false, 200, true},
		{"exactly the limit", "0123456789abcdef", false, 200, true},
		{"over the limit", "0123456789abcdefX", false, 413, false},
		{"over the limit, chunked", "0123456789abcdefX", true, 413, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = 0
			req := httptest.NewRequest("POST", "/", strings.NewReader(tt.body))
			if tt.chunked {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, tt.status, rec.Code, "status")
			require.Equal(t, tt.reached, got == 1, "handler reached")
			if tt.status == 413 {
				assert.Contains(t, rec.Body.String(), `"code":"body_too_large"`)
			}
		})
	}
}

// FuzzCheckJSON: the checker never panics, and whatever it accepts protojson
// can decode or rejects with an error (never a panic); errors never echo
// input longer than a few characters.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{"reason":"x"}`, `{"metadata":{"a":"b"}}`, `{"x":1}`, `[`, `{"reason":{"a":1}}`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := CheckJSON([]byte(s), md)
		if e != nil {
			require.NotEmpty(t, e.Code, "untyped error %v", e)
			require.NotEmpty(t, e.Field, "untyped error %v", e)
			if len(s) > 8 {
				require.NotContains(t, e.Message, s, "error echoes input")
			}
			return
		}
		var m errdetails.ErrorInfo
		_ = protojson.Unmarshal([]byte(s), &m)
	})
}
