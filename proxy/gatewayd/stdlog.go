package gatewayd

import (
	"io"
	"log"

	"github.com/obolpay/obol/proxy/panscan"
)

// maskedLog masks card numbers in what the standard log package writes.
// net/http's client transport writes there, quoting an upstream's bytes
// (bytes sent after an answer on a kept-alive connection: "Unsolicited
// response received on idle HTTP channel starting with …"), and the
// gateway's upstreams are the acquirers it reveals cards to. It keeps the
// log's destination (slog's default handler writes through the log
// package too, so sending the log into slog could loop).
type maskedLog struct{ out io.Writer }

func (m maskedLog) Write(p []byte) (int, error) {
	if _, err := io.WriteString(m.out, panscan.Loose(panscan.String(string(p)))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// maskStdLog masks the process's standard log (once: it is process wide).
func maskStdLog() {
	if _, ok := log.Writer().(maskedLog); !ok {
		log.SetOutput(maskedLog{log.Writer()})
	}
}
