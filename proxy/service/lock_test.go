package service

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestPaymentLock: one payment's changes are serialised, and the lock table
// is empty once nobody holds a lock (it does not grow with payments).
func TestPaymentLock(t *testing.T) {
	s := New(Config{})
	var wg sync.WaitGroup
	inside := 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := "pay_a"
			if i%2 == 1 {
				id = "pay_b"
			}
			unlock := s.lock(id)
			if id == "pay_a" {
				inside++ // the race detector flags this if pay_a is not serialised
			}
			unlock()
		}(i)
	}
	wg.Wait()
	assert.Equal(t, 25, inside, "pay_a entries")
	assert.Empty(t, s.locks, "lock entries left")
}
