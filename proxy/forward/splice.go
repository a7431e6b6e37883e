package forward

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// span is where a token sits in a request body: body[start:end] is
// replaced by the rendered card data.
type span struct {
	start, end int
	token      string
	reveal     *Reveal
}

const maxDepth = 64

// isToken reports whether v looks like an Obol token.
func isToken(v string) bool {
	rest, ok := strings.CutPrefix(v, "tok_")
	if !ok || rest == "" || len(rest) > 64 {
		return false
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

var (
	errMissing   = errors.New("no value there")
	errDuplicate = errors.New("appears more than once")
	errNotToken  = errors.New("the value there is not a token (tok_…)")
)

// jsonSpan finds the string value at a dotted path in a JSON body. The
// value must be a token written as a plain JSON string; a path that
// appears twice (duplicate keys) is refused, since the upstream's parser
// might read the other one.
func jsonSpan(body []byte, path string) (start, end int, token string, err error) {
	target := strings.Split(path, ".")
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	found := 0
	var walk func(cur []string, depth int) error
	walk = func(cur []string, depth int) error {
		if depth > maxDepth {
			return errors.New("JSON nested too deeply")
		}
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		at := equalPath(cur, target)
		switch t := tok.(type) {
		case json.Delim:
			if at {
				found++
				token = ""
			}
			switch t {
			case '{':
				for dec.More() {
					k, err := dec.Token()
					if err != nil {
						return err
					}
					key, _ := k.(string)
					if err := walk(append(cur[:len(cur):len(cur)], key), depth+1); err != nil {
						return err
					}
				}
			case '[':
				for i := 0; dec.More(); i++ {
					if err := walk(append(cur[:len(cur):len(cur)], strconv.Itoa(i)), depth+1); err != nil {
						return err
					}
				}
			}
			_, err := dec.Token() // the closing delimiter
			return err
		case string:
			if at {
				found++
				end = int(dec.InputOffset())
				token = t
				start = end - len(t) - 2
			}
		default:
			if at {
				found++
				token = ""
			}
		}
		return nil
	}
	if err := walk(nil, 0); err != nil {
		return 0, 0, "", fmt.Errorf("the body is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, 0, "", errors.New("the body is not valid JSON: trailing data")
	}
	switch {
	case found == 0:
		return 0, 0, "", errMissing
	case found > 1:
		return 0, 0, "", errDuplicate
	case !isToken(token) || start < 0 || string(body[start:end]) != `"`+token+`"`:
		return 0, 0, "", errNotToken
	}
	return start, end, token, nil
}

func equalPath(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// formSpan finds a form field's value in an x-www-form-urlencoded body.
func formSpan(body []byte, field string) (start, end int, token string, err error) {
	found := 0
	pos := 0
	for _, pair := range bytes.Split(body, []byte("&")) {
		k, v, _ := bytes.Cut(pair, []byte("="))
		key, kerr := url.QueryUnescape(string(k))
		if kerr == nil && key == field {
			found++
			start = pos + len(k) + 1
			end = start + len(v)
			token = string(v)
			if !bytes.Contains(pair, []byte("=")) {
				start, end = pos+len(pair), pos+len(pair)
			}
		}
		pos += len(pair) + 1
	}
	switch {
	case found == 0:
		return 0, 0, "", errMissing
	case found > 1:
		return 0, 0, "", errDuplicate
	case !isToken(token):
		return 0, 0, "", errNotToken
	}
	return start, end, token, nil
}

// Revealed is one card's data in wipeable buffers.
type Revealed struct {
	Number, CVC       []byte
	ExpMonth, ExpYear int
}

// Wipe zeroes the card's buffers.
func (c *Revealed) Wipe() {
	for _, b := range [][]byte{c.Number, c.CVC} {
		clear(b)
	}
}

var errNoCVC = errors.New("the token's CVC is no longer held (a CVC is used once)")

// render appends the template's output for card c, escaped for where it
// goes (JSON string, JSON number, form value, header).
func (r *Reveal) render(dst []byte, c *Revealed) ([]byte, error) {
	quote := r.JSON != "" && r.As != "number"
	if quote {
		dst = append(dst, '"')
	}
	for _, p := range r.tmpl {
		switch p.field {
		case "":
			if r.Form != "" {
				dst = append(dst, url.QueryEscape(p.lit)...)
			} else {
				dst = append(dst, p.lit...)
			}
		case FieldNumber:
			dst = append(dst, c.Number...)
		case FieldCVC:
			if len(c.CVC) == 0 {
				return dst, errNoCVC
			}
			dst = append(dst, c.CVC...)
		case FieldExpMonth:
			if c.ExpMonth < 10 && r.As != "number" {
				dst = append(dst, '0')
			}
			dst = strconv.AppendInt(dst, int64(c.ExpMonth), 10)
		case FieldExpYear:
			dst = strconv.AppendInt(dst, int64(c.ExpYear), 10)
		}
	}
	if quote {
		dst = append(dst, '"')
	}
	return dst, nil
}

// splice builds the upstream body: body with every span replaced by its
// rendered card data, in one fresh buffer the caller wipes.
func splice(body []byte, spans []span, cards map[string]*Revealed) ([]byte, error) {
	out := make([]byte, 0, len(body)+64*len(spans))
	pos := 0
	for _, s := range spans {
		if s.start < pos {
			return out, errors.New("two reveals overlap")
		}
		out = append(out, body[pos:s.start]...)
		var err error
		out, err = s.reveal.render(out, cards[s.token])
		if err != nil {
			return out, err
		}
		pos = s.end
	}
	return append(out, body[pos:]...), nil
}
