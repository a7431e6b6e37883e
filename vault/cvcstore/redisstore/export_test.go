package redisstore

// QueuedPuts is how many Puts wait for a flusher (tests).
func QueuedPuts(s *Store) int { return s.puts.Queued() }
