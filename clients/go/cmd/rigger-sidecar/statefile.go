package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rigger-dev/rigger/clients/go/rigger"
)

// maxStateBytes is the most a state file may hold: a uint64 is 20 digits,
// the rest is whitespace.
const maxStateBytes = 64

// stateFile is --state-file: the sequence of the last event printed, in
// decimal with a newline. Each save writes a new file beside it and renames
// it over the old one, so a reader, or a sidecar killed mid-save, finds the
// old sequence or the new one, never a mix. Saves do not fsync: the file
// survives the sidecar's death, but after a machine crash it may hold an
// older sequence (more repeats) or be empty, which load refuses. The same
// rules as the Python and TypeScript sidecars.
type stateFile struct {
	path string
}

// load returns the recorded sequence; ok is false when the file does not
// exist yet. Anything else that is not a sequence is an error: resuming from
// a guess could lose events or repeat the whole log.
func (s stateFile) load() (sequence uint64, ok bool, err error) {
	// Non-blocking, so a FIFO put in the file's place cannot hang the
	// sidecar; it is refused below as not a regular file.
	f, err := os.OpenFile(s.path, os.O_RDONLY|openNonBlocking, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("cannot be read: %w", cause(err))
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("cannot be read: %w", cause(err))
	}
	if !info.Mode().IsRegular() {
		return 0, false, errors.New("is not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxStateBytes+1))
	if err != nil {
		return 0, false, fmt.Errorf("cannot be read: %w", cause(err))
	}
	if len(data) > maxStateBytes {
		return 0, false, fmt.Errorf("holds more than a sequence (over %d bytes)", maxStateBytes)
	}
	text := strings.Trim(string(data), " \t\r\n")
	if text == "" {
		return 0, false, errors.New("is empty")
	}
	sequence, err = strconv.ParseUint(text, 10, 64)
	if err != nil {
		// Quoted, since the file may hold anything.
		return 0, false, fmt.Errorf("holds %s, not a sequence", rigger.Quote(text))
	}
	return sequence, true, nil
}

// checkWritable reports an error unless a new state can be written beside
// the file.
func (s stateFile) checkWritable() error {
	f, err := s.temporary()
	if err != nil {
		return fmt.Errorf("its directory cannot be written: %w", cause(err))
	}
	f.Close()
	return os.Remove(f.Name())
}

// save records sequence: written to a new file beside the state file, then
// renamed over it.
func (s stateFile) save(sequence uint64) error {
	f, err := s.temporary()
	if err != nil {
		return fmt.Errorf("cannot record #%d: %w", sequence, cause(err))
	}
	_, err = f.WriteString(strconv.FormatUint(sequence, 10) + "\n")
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("cannot record #%d: %w", sequence, cause(err))
	}
	return nil
}

// temporary creates a file with a fresh name, exclusively (never through a
// planted symlink), in the state file's directory so the rename is atomic.
func (s stateFile) temporary() (*os.File, error) {
	return os.CreateTemp(filepath.Dir(s.path), "."+filepath.Base(s.path)+".*.tmp")
}

// cause drops the operation and path from an *fs.PathError: the caller
// names the file already.
func cause(err error) error {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		return pathErr.Err
	}
	var linkErr *os.LinkError
	if errors.As(err, &linkErr) {
		return linkErr.Err
	}
	return err
}
