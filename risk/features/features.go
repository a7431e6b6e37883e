// Package features computes the velocity features risk rules read: counts
// and amount sums over sliding 1 min, 1 h and 24 h windows per card
// fingerprint, merchant, IP, e-mail hash and device; distinct cards per IP
// and per device; and how long a merchant has known a card. Redis backs it
// in production: Aggregated (riskd's: counted locally, synced every 20 ms)
// or Redis (one script call, one round trip, per evaluation); an
// in-process store backs `obol dev`; one conformance suite covers all.
// Outside PCI scope: keys are fingerprints and hashes, never a PAN.
package features

import (
	"context"
	"time"

	riskv1 "github.com/obolpay/obol/proto/obol/risk/v1"
)

// Windows are the sliding windows, in seconds.
var Windows = [3]int64{60, 3600, 86400}

// Dimension indexes.
const (
	DimCard = iota
	DimMerchant
	DimIP
	DimEmail
	DimDevice
	numDims
)

var dimNames = [numDims]string{"card", "merchant", "ip", "email", "device"}

// Observation is one payment as the feature store sees it.
type Observation struct {
	Merchant    string
	Fingerprint string
	IP          string
	EmailHash   string
	Device      string
	Amount      int64
	Now         time.Time
	// PaymentID, when set, makes recording idempotent per payment: a
	// payment observed before (within SeenFor) is not counted again, so a
	// retry of one payment (same Idempotency-Key) is one payment in the
	// velocity features, however many attempts it took.
	PaymentID string
}

// SeenFor is how long a recorded payment id is remembered (longer than the
// longest window).
const SeenFor = 25 * time.Hour

func (o Observation) values() [numDims]string {
	return [numDims]string{o.Fingerprint, o.Merchant, o.IP, o.EmailHash, o.Device}
}

// Result holds the features for one observation.
type Result struct {
	Card, Merchant, IP, Email, Device *riskv1.Velocity
	CardAgeSeconds                    int64
}

// Store computes features; with record, the observation is counted first
// (a real evaluation); without, nothing changes (a dry run).
type Store interface {
	Observe(ctx context.Context, o Observation, record bool) (Result, error)
	Ping(ctx context.Context) error
}

// bucketCounts are the raw numbers for one (dimension, window).
type bucketCounts struct {
	curCount, curSum, prevCount, prevSum int64
}

// estimate is the sliding-window estimate: the current bucket plus the part
// of the previous bucket the window still covers.
func estimate(b bucketCounts, w int64, now int64) (count, sum int64) {
	elapsed := now % w
	remain := w - elapsed
	return b.curCount + b.prevCount*remain/w, b.curSum + b.prevSum*remain/w
}

func assemble(raw [numDims][3]bucketCounts, distinct [2][2]int64, firstSeen, now int64, present [numDims]bool) Result {
	var vs [numDims]*riskv1.Velocity
	for d := 0; d < numDims; d++ {
		v := &riskv1.Velocity{}
		if present[d] {
			v.Count_1M, v.Sum_1M = estimate(raw[d][0], Windows[0], now)
			v.Count_1H, v.Sum_1H = estimate(raw[d][1], Windows[1], now)
			v.Count_24H, v.Sum_24H = estimate(raw[d][2], Windows[2], now)
		}
		vs[d] = v
	}
	vs[DimIP].DistinctCards_1H, vs[DimIP].DistinctCards_24H = distinct[0][0], distinct[0][1]
	vs[DimDevice].DistinctCards_1H, vs[DimDevice].DistinctCards_24H = distinct[1][0], distinct[1][1]
	r := Result{Card: vs[DimCard], Merchant: vs[DimMerchant], IP: vs[DimIP], Email: vs[DimEmail], Device: vs[DimDevice]}
	if firstSeen > 0 && now > firstSeen {
		r.CardAgeSeconds = now - firstSeen
	}
	return r
}
