package panscan

import (
	"bytes"
	"testing"
)

// BenchmarkRedactor: a 1 MiB answer (the gateway's default cap) of
// adversarial shapes, with one revealed number and CVC.
func BenchmarkRedactor(b *testing.B) {
	shapes := map[string][]byte{
		"json":          bytes.Repeat([]byte(`{"amount":1000,"currency":"usd","id":"ch_123","status":"ok"},`), 1<<20/60),
		"digits":        bytes.Repeat([]byte("4242424242424241"), 1<<16),
		"escaped":       bytes.Repeat([]byte(`\u0034`), 1<<20/6),
		"separators":    bytes.Repeat([]byte("4 - "), 1<<18),
		"nul":           make([]byte, 1<<20),
		"entities":      bytes.Repeat([]byte("&#52"), 1<<18),
		"cvc key chain": bytes.Repeat([]byte(`"cvc":"12",`), 1<<20/11),
	}
	for name, in := range shapes {
		b.Run(name, func(b *testing.B) {
			r := NewRedactor([][]byte{[]byte(testPAN)}, [][]byte{[]byte(testCVC)})
			buf := make([]byte, len(in))
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				copy(buf, in)
				r.Redact(buf)
			}
		})
	}
}

// BenchmarkEchoed: the backstop over the same 1 MiB shapes, plus base64
// and hex blobs (decoded at every alignment, two levels deep).
func BenchmarkEchoed(b *testing.B) {
	shapes := map[string][]byte{
		"json":     bytes.Repeat([]byte(`{"amount":1000,"currency":"usd","id":"ch_123","status":"ok"},`), 1<<20/60),
		"digits":   bytes.Repeat([]byte("4242424242424241"), 1<<16),
		"escaped":  bytes.Repeat([]byte(`\u0034`), 1<<20/6),
		"entities": bytes.Repeat([]byte("&#52"), 1<<18),
		"base64":   bytes.Repeat([]byte("QUJDREVGR0hJSktMTU5PUA"), 1<<20/22),
		"hex":      bytes.Repeat([]byte("0123456789abcdef"), 1<<16),
		"cjk":      bytes.Repeat([]byte("\u4e2d\u6587\u2460"), 1<<20/9),
	}
	for name, in := range shapes {
		b.Run(name, func(b *testing.B) {
			r := NewRedactor([][]byte{[]byte(testPAN)}, nil)
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				r.Echoed(in)
			}
		})
	}
}
