package gatewayd

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/obolpay/obol/proxy/service"
)

// writeStore is a service.Store whose event-queuing writes answer err
// (its other methods are not called here).
type writeStore struct {
	service.Store
	err error
}

func (s writeStore) InsertCommit(context.Context, *service.Payment, []service.OutboxEntry, time.Time) error {
	return s.err
}
func (s writeStore) Commit(context.Context, *service.Payment, []service.OutboxEntry, time.Time) error {
	return s.err
}
func (s writeStore) FinishOperation(context.Context, *service.Payment, *service.Operation, []service.OutboxEntry, time.Time) error {
	return s.err
}

// TestKickingStore: the relay is kicked after a write that queued a
// merchant event, and only then.
func TestKickingStore(t *testing.T) {
	merchant := []service.OutboxEntry{{ID: "ob_1"}, {Merchant: &service.MerchantEvent{ID: "evt_1"}}}
	ledgerOnly := []service.OutboxEntry{{ID: "ob_1"}}
	failed := errors.New("store down")
	writes := map[string]func(s service.Store, ev []service.OutboxEntry) error{
		"commit": func(s service.Store, ev []service.OutboxEntry) error {
			return s.Commit(context.Background(), &service.Payment{}, ev, time.Time{})
		},
		"insert commit": func(s service.Store, ev []service.OutboxEntry) error {
			return s.InsertCommit(context.Background(), &service.Payment{}, ev, time.Time{})
		},
		"finish operation": func(s service.Store, ev []service.OutboxEntry) error {
			return s.FinishOperation(context.Background(), &service.Payment{}, &service.Operation{}, ev, time.Time{})
		},
	}
	cases := []struct {
		name   string
		events []service.OutboxEntry
		err    error
		kicks  int
	}{
		{"a merchant event kicks once", merchant, nil, 1},
		{"ledger events only do not kick", ledgerOnly, nil, 0},
		{"a failed write does not kick", merchant, failed, 0},
	}
	for wname, write := range writes {
		for _, tc := range cases {
			t.Run(wname+"/"+tc.name, func(t *testing.T) {
				kicks := 0
				s := kickingStore{Store: writeStore{err: tc.err}, kick: func() { kicks++ }}
				err := write(s, tc.events)
				assert.ErrorIs(t, err, tc.err)
				assert.Equal(t, tc.kicks, kicks)
			})
		}
	}
}
