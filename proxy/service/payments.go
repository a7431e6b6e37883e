// Package service is the gateway's RPC layer, obol.gateway.v1.PaymentService,
// and the payment flow behind it: authenticate the merchant, score the
// payment with riskd (PAN-free context), hold the amount in the ledger,
// reveal the card from vaultd (mTLS, sealed to the gateway's key and bound to the request), send it to
// the acquirer connector, wipe it, and record the outcome in the ledger and
// the payment store (Store, implemented by proxy/store). The card exists in
// this process only between the reveal and the connector call. PCI zone.
package service

import (
	"time"
)

// Statuses.
const (
	// StatusProcessing: stored before the ledger hold and the acquirer
	// call; final within one request, or resolved by the sweeper.
	StatusProcessing        = "processing"
	StatusAuthorized        = "authorized"
	StatusCaptured          = "captured"
	StatusPartiallyRefunded = "partially_refunded"
	StatusRefunded          = "refunded"
	StatusCanceled          = "canceled"
	StatusDeclined          = "declined"
	StatusFailed            = "failed"
)

// Decline and failure codes set by the gateway itself.
const (
	CodeRiskBlocked = "risk_blocked"
	// CodeAuthenticationRequired declines a payment riskd wants to
	// challenge: 3-D Secure does not exist yet, so it is never approved.
	CodeAuthenticationRequired = "authentication_required"
	CodeAcquirerTimeout        = "acquirer_timeout"
	CodeAcquirerUnavailable    = "acquirer_unavailable"
	// CodeProcessingAbandoned: the request died after the hold; the
	// sweeper reversed the authorization and released the hold.
	CodeProcessingAbandoned = "processing_abandoned"
)

// Card is PAN-free card metadata.
type Card struct {
	Brand       string `json:"brand"`
	Last4       string `json:"last4"`
	Fingerprint string `json:"fingerprint"`
}

// riskd's actions (Risk.Action) and what the gateway does with each.
const (
	RiskAllow     = "allow"     // authorize (and capture) as asked
	RiskReview    = "review"    // authorize, never capture automatically
	RiskChallenge = "challenge" // declined: authentication_required
	RiskBlock     = "block"     // declined: risk_blocked
)

// Risk is riskd's decision as kept on the payment.
type Risk struct {
	// Action is riskd's action (allow, review, challenge, block); stored
	// under its former name "decision".
	Action         string   `json:"decision"`
	Score          int32    `json:"score"`
	Rules          []string `json:"rules"`
	RuleSetVersion string   `json:"rule_set_version"`
	Fallback       bool     `json:"fallback"`
}

// Refund is one refund of a payment.
type Refund struct {
	ID        string    `json:"id"`
	Amount    int64     `json:"amount"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
}

// Payment is a payment as the gateway stores it.
type Payment struct {
	ID                string
	MerchantID        string
	Status            string
	Amount            int64
	AmountCaptured    int64
	AmountRefunded    int64
	Currency          string
	Token             string
	Acquirer          string
	AcquirerReference string
	Card              Card
	Risk              Risk
	DeclineCode       string
	Description       string
	Metadata          map[string]string
	Refunds           []Refund
	Fee               int64
	CreatedAt         time.Time
	UpdatedAt         time.Time
	Version           int64
	// PendingOp is the capture, cancel or refund in flight (its
	// Operation's id), "" when none.
	PendingOp string
	// Compensation lists the undo steps a final payment still owes
	// (CompReverse, CompRelease, comma-separated); the sweeper finishes
	// them when the request could not.
	Compensation string
}
