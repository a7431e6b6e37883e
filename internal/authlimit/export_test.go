package authlimit

// QueuedReads is how many Gets wait for the next shared read (tests).
func QueuedReads(r *Redis) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next == nil {
		return 0
	}
	return r.next.waiting
}
