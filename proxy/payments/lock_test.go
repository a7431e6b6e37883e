package payments

import (
	"sync"
	"testing"
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
	if inside != 25 {
		t.Fatalf("pay_a entered %d times, want 25", inside)
	}
	if n := len(s.locks); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}
