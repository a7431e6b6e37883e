package features

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

//go:embed observe.lua
var observeLua string

var observeScript = redis.NewScript(observeLua)

// Redis is the production feature store.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ Store = (*Redis)(nil)

// NewRedis uses rdb with keys under prefix (e.g. "obol:risk:").
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, prefix: prefix}
}

// Ping checks Redis answers.
func (r *Redis) Ping(ctx context.Context) error { return r.rdb.Ping(ctx).Err() }

// Observe runs one script: optionally record, then read every counter.
// Keys of one evaluation span several slots, so Redis Cluster needs the
// whole feature keyspace on one node (a hash tag in the prefix, e.g.
// "obol:risk:{v}:").
func (r *Redis) Observe(ctx context.Context, o Observation, record bool) (Result, error) {
	now := o.Now.Unix()
	if record && o.PaymentID != "" {
		// Same hash tag as the other keys (the prefix's), so a cluster
		// keeps it on their node.
		fresh, err := r.rdb.SetNX(ctx, r.prefix+"seen:"+o.PaymentID, 1, SeenFor).Result()
		if err != nil {
			return Result{}, err
		}
		record = fresh
	}
	vals := o.values()
	var present [numDims]bool
	keys := make([]string, 0, numDims+9)
	for d := 0; d < numDims; d++ {
		present[d] = vals[d] != ""
		keys = append(keys, r.prefix+"v:"+dimNames[d]+":"+vals[d])
	}
	for _, d := range []int{DimIP, DimDevice} {
		for _, w := range Windows[1:] {
			b := now / w
			base := r.prefix + "d:" + dimNames[d] + ":" + vals[d] + ":" + strconv.FormatInt(w, 10) + ":"
			keys = append(keys, base+strconv.FormatInt(b, 10), base+strconv.FormatInt(b-1, 10))
		}
	}
	keys = append(keys, r.prefix+"fs:"+o.Merchant+":"+o.Fingerprint)
	mask := ""
	for d := 0; d < numDims; d++ {
		if present[d] {
			mask += "1"
		} else {
			mask += "0"
		}
	}
	rec := "0"
	if record {
		rec = "1"
	}
	res, err := observeScript.Run(ctx, r.rdb, keys, rec, o.Amount, o.Fingerprint, now, mask, Windows[0], Windows[1], Windows[2]).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("features: %w", err)
	}
	if len(res) != numDims*3*4+8+1 {
		return Result{}, fmt.Errorf("features: script returned %d values", len(res))
	}
	var raw [numDims][3]bucketCounts
	i := 0
	for d := 0; d < numDims; d++ {
		for w := 0; w < 3; w++ {
			raw[d][w] = bucketCounts{res[i], res[i+1], res[i+2], res[i+3]}
			i += 4
		}
	}
	// Distinct cards: current bucket plus the still-covered part of the
	// previous one (an estimate: a card seen in both counts in both).
	var distinct [2][2]int64
	for d := 0; d < 2; d++ {
		for w := 0; w < 2; w++ {
			distinct[d][w], _ = estimate(bucketCounts{curCount: res[i], prevCount: res[i+1]}, Windows[w+1], now)
			i += 2
		}
	}
	return assemble(raw, distinct, res[i], now, present), nil
}
