// Package audit defines Obol's audit trail: an append-only, hash-chained
// record of every detokenize, delete, key event and admin action. Each
// event's hash covers the previous hash and every field, so changing,
// removing or reordering any event breaks the chain from there on; the head
// is also anchored in Vault, so a rewritten chain does not match the anchor.
// Events never hold a PAN: tokens, merchant ids, purposes, hosts, versions.
package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"time"
)

// Actions recorded.
const (
	ActionDetokenize         = "detokenize"
	ActionDeleteToken        = "delete_token"
	ActionAttachCVC          = "attach_cvc"
	ActionKEKRotated         = "kek_rotation_seen"
	ActionRewrap             = "rewrap"
	ActionMerchantCreate     = "merchant_create"
	ActionFingerprintRotated = "fingerprint_rotation_seen"
	ActionRefingerprint      = "refingerprint"
	ActionReencrypt          = "reencrypt"
)

// Event is one audit record. Seq, PrevHash and Hash are assigned on append.
type Event struct {
	Seq             int64
	At              time.Time
	Actor           string // who: "gateway:spiffe://…", "merchant:mer_…", "vaultd", "cli"
	Action          string
	MerchantID      string
	Token           string
	Purpose         string
	DestinationHost string
	KEKVersion      int
	Detail          string
	PrevHash        []byte
	Hash            []byte
}

// Genesis is the prev_hash of the first event.
var Genesis = make([]byte, sha256.Size)

// ComputeHash is SHA-256 over prev and every field, each length-prefixed so
// that no two different events encode alike.
func ComputeHash(prev []byte, e Event) []byte {
	h := sha256.New()
	var n [8]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	put(prev)
	binary.BigEndian.PutUint64(n[:], uint64(e.Seq))
	put(n[:])
	put([]byte(e.At.UTC().Format(time.RFC3339Nano)))
	for _, s := range []string{e.Actor, e.Action, e.MerchantID, e.Token, e.Purpose, e.DestinationHost, e.Detail} {
		put([]byte(s))
	}
	binary.BigEndian.PutUint64(n[:], uint64(e.KEKVersion))
	put(n[:])
	return h.Sum(nil)
}

// Chain assigns seq, prev_hash and hash to events following (lastSeq, lastHash).
func Chain(lastSeq int64, lastHash []byte, events []Event) {
	if lastHash == nil {
		lastHash = Genesis
	}
	for i := range events {
		events[i].Seq = lastSeq + 1
		events[i].At = events[i].At.UTC().Truncate(time.Microsecond)
		events[i].PrevHash = lastHash
		events[i].Hash = ComputeHash(lastHash, events[i])
		lastSeq, lastHash = events[i].Seq, events[i].Hash
	}
}

// Problem is a break in the chain.
type Problem struct {
	Seq    int64
	Reason string
}

// Verifier checks events streamed in seq order.
type Verifier struct {
	lastSeq  int64
	lastHash []byte
	Checked  int64
	Problems []Problem
}

// Add checks the next event.
func (v *Verifier) Add(e Event) {
	if v.lastHash == nil {
		v.lastHash = Genesis
	}
	v.Checked++
	if e.Seq != v.lastSeq+1 {
		v.Problems = append(v.Problems, Problem{e.Seq, "sequence gap: expected " + itoa(v.lastSeq+1)})
	}
	if string(e.PrevHash) != string(v.lastHash) {
		v.Problems = append(v.Problems, Problem{e.Seq, "prev_hash does not match the previous event"})
	}
	if string(ComputeHash(e.PrevHash, e)) != string(e.Hash) {
		v.Problems = append(v.Problems, Problem{e.Seq, "hash does not match the event's contents"})
	}
	v.lastSeq, v.lastHash = e.Seq, e.Hash
}

// Head is the last (seq, hash) seen.
func (v *Verifier) Head() (int64, []byte) { return v.lastSeq, v.lastHash }

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
