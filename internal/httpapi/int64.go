package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Int64sAsNumbers rewrites protojson output of a message of type md so that
// every int64, uint64 (and their sint/fixed variants, and the Int64Value and
// UInt64Value wrappers) is a JSON number instead of a quoted string.
// protojson quotes 64-bit integers because JavaScript numbers are exact only
// up to 2^53; Obol's 64-bit fields are amounts in minor units, counts and
// sequence numbers, far below that, and a generated client must be able to
// do arithmetic on them. Everything else is copied as is, in order.
//
// raw must be protojson output for md (the REST marshaler's own): a value
// of an int64 field that is not a decimal integer string is an error.
func Int64sAsNumbers(raw []byte, md protoreflect.MessageDescriptor) ([]byte, error) {
	if !hasInt64(md, map[protoreflect.FullName]bool{}) {
		return raw, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	w := &jsonWriter{}
	if err := w.message(dec, md); err != nil {
		return nil, fmt.Errorf("int64 as numbers: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("int64 as numbers: data after the JSON value")
	}
	return w.buf.Bytes(), nil
}

func is64(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return true
	}
	return false
}

// wrapper64 reports the well-known wrappers whose JSON form is a quoted
// 64-bit integer.
func wrapper64(md protoreflect.MessageDescriptor) bool {
	n := md.FullName()
	return n == "google.protobuf.Int64Value" || n == "google.protobuf.UInt64Value"
}

// hasInt64 reports whether md (or a message it holds) has a 64-bit
// integer field, so that messages without one are written untouched.
func hasInt64(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	if wrapper64(md) {
		return true
	}
	if md.FullName().Parent() == "google.protobuf" {
		return false
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if is64(fd.Kind()) {
			return true
		}
		if m := fd.Message(); m != nil && hasInt64(m, seen) {
			return true
		}
	}
	return false
}

type jsonWriter struct {
	buf bytes.Buffer
}

func (w *jsonWriter) str(s string) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	w.buf.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// delim reads the next token and requires it to be d.
func expect(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("want %q, got %v", d, tok)
	}
	return nil
}

// message writes a JSON object of message md (or null).
func (w *jsonWriter) message(dec *json.Decoder, md protoreflect.MessageDescriptor) error {
	if wrapper64(md) {
		return w.int64Value(dec)
	}
	if md.FullName().Parent() == "google.protobuf" {
		return w.copyValue(dec)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		w.buf.WriteString("null")
		return nil
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%s: want an object", md.FullName())
	}
	w.buf.WriteByte('{')
	for first := true; dec.More(); first = false {
		if !first {
			w.buf.WriteByte(',')
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		w.str(key)
		w.buf.WriteByte(':')
		fd := md.Fields().ByName(protoreflect.Name(key))
		if fd == nil {
			fd = md.Fields().ByJSONName(key)
		}
		if err := w.field(dec, fd); err != nil {
			return err
		}
	}
	if err := expect(dec, '}'); err != nil {
		return err
	}
	w.buf.WriteByte('}')
	return nil
}

// field writes the value of field fd (nil: unknown, copied as is).
func (w *jsonWriter) field(dec *json.Decoder, fd protoreflect.FieldDescriptor) error {
	switch {
	case fd == nil:
		return w.copyValue(dec)
	case fd.IsMap():
		return w.container(dec, '{', '}', true, func() error { return w.single(dec, fd.MapValue()) })
	case fd.IsList():
		return w.container(dec, '[', ']', false, func() error { return w.single(dec, fd) })
	}
	return w.single(dec, fd)
}

// container writes an object (keyed) or an array whose elements each are
// written by elem; null passes through.
func (w *jsonWriter) container(dec *json.Decoder, open, closing json.Delim, keyed bool, elem func() error) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		w.buf.WriteString("null")
		return nil
	}
	if tok != open {
		return fmt.Errorf("want %q", open)
	}
	w.buf.WriteString(open.String())
	for first := true; dec.More(); first = false {
		if !first {
			w.buf.WriteByte(',')
		}
		if keyed {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			w.str(key)
			w.buf.WriteByte(':')
		}
		if err := elem(); err != nil {
			return err
		}
	}
	if err := expect(dec, closing); err != nil {
		return err
	}
	w.buf.WriteString(closing.String())
	return nil
}

// single writes one (non-repeated) value of fd's type.
func (w *jsonWriter) single(dec *json.Decoder, fd protoreflect.FieldDescriptor) error {
	switch {
	case is64(fd.Kind()):
		return w.int64Value(dec)
	case fd.Message() != nil:
		return w.message(dec, fd.Message())
	}
	return w.copyValue(dec)
}

// int64Value writes a quoted decimal integer unquoted.
func (w *jsonWriter) int64Value(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case nil:
		w.buf.WriteString("null")
		return nil
	case json.Number:
		w.buf.WriteString(string(v))
		return nil
	case string:
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			if _, err := strconv.ParseUint(v, 10, 64); err != nil {
				return errors.New("a 64-bit integer field is not a decimal integer")
			}
		}
		w.buf.WriteString(v)
		return nil
	}
	return errors.New("a 64-bit integer field is not a string or number")
}

// copyValue copies one JSON value unchanged.
func (w *jsonWriter) copyValue(dec *json.Decoder) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	w.buf.Write(raw)
	return nil
}
