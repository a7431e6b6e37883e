package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

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
	if !holdsInt64(md) {
		return raw, nil
	}
	sc := &scanner{in: raw, out: make([]byte, 0, len(raw))}
	sc.space()
	if err := sc.message(md); err != nil {
		return nil, fmt.Errorf("int64 as numbers: %w", err)
	}
	sc.space()
	if sc.i != len(sc.in) {
		return nil, errors.New("int64 as numbers: data after the JSON value")
	}
	return sc.out, nil
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

// int64Messages caches hasInt64 by message.
var int64Messages sync.Map // protoreflect.FullName → bool

func holdsInt64(md protoreflect.MessageDescriptor) bool {
	if v, ok := int64Messages.Load(md.FullName()); ok {
		return v.(bool)
	}
	has := hasInt64(md, map[protoreflect.FullName]bool{})
	int64Messages.Store(md.FullName(), has)
	return has
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

// scanner copies protojson output byte for byte, following the message
// descriptor, and drops the quotes around 64-bit integers. It assumes the
// input is JSON (protojson's) and fails on anything it does not expect.
type scanner struct {
	in  []byte
	i   int
	out []byte
}

var errSyntax = errors.New("not the JSON expected")

func (s *scanner) space() {
	for s.i < len(s.in) {
		switch s.in[s.i] {
		case ' ', '\t', '\n', '\r':
			s.out = append(s.out, s.in[s.i])
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.i < len(s.in) {
		return s.in[s.i]
	}
	return 0
}

// take copies one expected byte.
func (s *scanner) take(c byte) error {
	if s.peek() != c {
		return errSyntax
	}
	s.out = append(s.out, c)
	s.i++
	return nil
}

// str reads a JSON string and returns it raw (with its quotes), uncopied.
func (s *scanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, errSyntax
	}
	for j := s.i + 1; j < len(s.in); j++ {
		switch s.in[j] {
		case '\\':
			j++
		case '"':
			raw := s.in[s.i : j+1]
			s.i = j + 1
			return raw, nil
		}
	}
	return nil, errSyntax
}

// null copies a null and reports whether there was one.
func (s *scanner) null() bool {
	if len(s.in)-s.i >= 4 && string(s.in[s.i:s.i+4]) == "null" {
		s.out = append(s.out, "null"...)
		s.i += 4
		return true
	}
	return false
}

// container copies an object (keyed) or an array, each element by elem;
// null passes through.
func (s *scanner) container(open, closing byte, elem func(key []byte) error) error {
	if s.null() {
		return nil
	}
	if err := s.take(open); err != nil {
		return err
	}
	s.space()
	if s.peek() == closing {
		return s.take(closing)
	}
	for {
		var key []byte
		if open == '{' {
			k, err := s.str()
			if err != nil {
				return err
			}
			s.out = append(s.out, k...)
			key = k
			s.space()
			if err := s.take(':'); err != nil {
				return err
			}
		}
		s.space()
		if err := elem(key); err != nil {
			return err
		}
		s.space()
		if s.peek() == closing {
			return s.take(closing)
		}
		if err := s.take(','); err != nil {
			return err
		}
		s.space()
	}
}

// message copies an object of message md.
func (s *scanner) message(md protoreflect.MessageDescriptor) error {
	if wrapper64(md) {
		return s.int64Value()
	}
	if md.FullName().Parent() == "google.protobuf" {
		return s.value()
	}
	return s.container('{', '}', func(raw []byte) error {
		key := string(raw[1 : len(raw)-1])
		if bytes.IndexByte(raw, '\\') >= 0 {
			if err := json.Unmarshal(raw, &key); err != nil {
				return errSyntax
			}
		}
		fd := md.Fields().ByName(protoreflect.Name(key))
		if fd == nil {
			fd = md.Fields().ByJSONName(key)
		}
		return s.field(fd)
	})
}

// field copies the value of field fd (nil: unknown, copied as is).
func (s *scanner) field(fd protoreflect.FieldDescriptor) error {
	switch {
	case fd == nil:
		return s.value()
	case fd.IsMap():
		return s.container('{', '}', func([]byte) error { return s.single(fd.MapValue()) })
	case fd.IsList():
		return s.container('[', ']', func([]byte) error { return s.single(fd) })
	}
	return s.single(fd)
}

// single copies one (non-repeated) value of fd's type.
func (s *scanner) single(fd protoreflect.FieldDescriptor) error {
	switch {
	case is64(fd.Kind()):
		return s.int64Value()
	case fd.Message() != nil:
		return s.message(fd.Message())
	}
	return s.value()
}

// int64Value writes a quoted decimal integer unquoted.
func (s *scanner) int64Value() error {
	if s.null() {
		return nil
	}
	if s.peek() != '"' {
		n := s.number()
		if n == nil {
			return errors.New("a 64-bit integer field is not a string or number")
		}
		s.out = append(s.out, n...)
		return nil
	}
	raw, err := s.str()
	if err != nil {
		return err
	}
	digits := string(raw[1 : len(raw)-1])
	if _, err := strconv.ParseInt(digits, 10, 64); err != nil {
		if _, err := strconv.ParseUint(digits, 10, 64); err != nil {
			return errors.New("a 64-bit integer field is not a decimal integer")
		}
	}
	s.out = append(s.out, digits...)
	return nil
}

// number reads a JSON number (nil if there is none), uncopied.
func (s *scanner) number() []byte {
	j := s.i
	for j < len(s.in) {
		c := s.in[j]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			j++
			continue
		}
		break
	}
	if j == s.i {
		return nil
	}
	n := s.in[s.i:j]
	s.i = j
	return n
}

// value copies any one JSON value unchanged.
func (s *scanner) value() error {
	switch c := s.peek(); {
	case c == '"':
		raw, err := s.str()
		if err != nil {
			return err
		}
		s.out = append(s.out, raw...)
		return nil
	case c == '{':
		return s.container('{', '}', func([]byte) error { return s.value() })
	case c == '[':
		return s.container('[', ']', func([]byte) error { return s.value() })
	case s.null():
		return nil
	}
	for _, lit := range []string{"true", "false"} {
		if len(s.in)-s.i >= len(lit) && string(s.in[s.i:s.i+len(lit)]) == lit {
			s.out = append(s.out, lit...)
			s.i += len(lit)
			return nil
		}
	}
	if n := s.number(); n != nil {
		s.out = append(s.out, n...)
		return nil
	}
	return errSyntax
}
