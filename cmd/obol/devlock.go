package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DevLockFile is the lock file `obol dev` holds in its data directory.
const DevLockFile = "obol.lock"

// errDataDirInUse is returned when another `obol dev` holds the data dir.
var errDataDirInUse = errors.New("data dir is in use")

// devLockInfo is what the holder of the lock records in it, so that a
// second start can name it.
type devLockInfo struct {
	PID       int               `json:"pid"`
	StartedAt time.Time         `json:"started_at"`
	Addresses map[string]string `json:"addresses,omitempty"`
}

// devLock is an exclusive OS file lock (flock) on the data dir's lock
// file: the kernel releases it when the process exits, however it exits
// (SIGKILL included), so it is never stale.
type devLock struct {
	f    *os.File
	info devLockInfo
}

// lockDataDir takes the data dir's lock, or returns errDataDirInUse naming
// the process that holds it.
func lockDataDir(dir string) (*devLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, DevLockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := flockExclusive(f); err != nil {
		f.Close()
		if !errors.Is(err, errLocked) {
			return nil, fmt.Errorf("data dir lock %s: %w", path, err)
		}
		abs, _ := filepath.Abs(dir)
		return nil, fmt.Errorf("%w: %s is used by another obol dev (%s); stop it or pass another --data-dir", errDataDirInUse, abs, describeHolder(path))
	}
	l := &devLock{f: f, info: devLockInfo{PID: os.Getpid(), StartedAt: time.Now().UTC()}}
	if err := l.write(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// describeHolder reads what the holder recorded (best effort: it may be
// writing it right now).
func describeHolder(path string) string {
	b, err := os.ReadFile(path)
	var info devLockInfo
	if err != nil || json.Unmarshal(b, &info) != nil || info.PID == 0 {
		return "pid unknown: it is still starting"
	}
	s := fmt.Sprintf("pid %d, started %s", info.PID, info.StartedAt.Format(time.RFC3339))
	if len(info.Addresses) > 0 {
		names := make([]string, 0, len(info.Addresses))
		for n := range info.Addresses {
			names = append(names, n)
		}
		sort.Strings(names)
		parts := make([]string, 0, len(names))
		for _, n := range names {
			parts = append(parts, n+" "+info.Addresses[n])
		}
		s += ", " + strings.Join(parts, ", ")
	}
	return s
}

// SetAddresses records the listening addresses once they are known.
func (l *devLock) SetAddresses(addrs map[string]string) error {
	l.info.Addresses = addrs
	return l.write()
}

func (l *devLock) write() error {
	b, _ := json.Marshal(l.info)
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("data dir lock: %w", err)
	}
	if _, err := l.f.WriteAt(append(b, '\n'), 0); err != nil {
		return fmt.Errorf("data dir lock: %w", err)
	}
	return nil
}

// Close releases the lock. The file stays (removing it would let a third
// process lock a new file while a second one waits on the old one).
func (l *devLock) Close() error {
	_ = l.f.Truncate(0)
	return l.f.Close()
}
