//go:build !unix

package main

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked by another process")

// flockExclusive is not implemented off Unix: obol dev refuses to run
// rather than risk two processes on one data dir.
func flockExclusive(*os.File) error {
	return errors.New("data dir locking needs a Unix system")
}

// processAlive cannot tell off Unix: it says yes.
func processAlive(pid int) bool { return pid > 0 }
