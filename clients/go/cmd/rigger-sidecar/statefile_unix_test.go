//go:build unix

package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStateFileRefusesWhatIsNoRegularFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{t.TempDir(), "/dev/zero", fifo} {
		done := make(chan error, 1)
		go func() { _, _, err := (stateFile{path}).load(); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("load(%s) = %v; want \"is not a regular file\"", path, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("load(%s) blocked", path)
		}
	}
}
