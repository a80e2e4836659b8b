package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{
		"--addr", "rigger:1", "--event-type", "created", "--event-type=TASK_EVENT_TYPE_ASSIGNED",
		"--event-type", "4", "--assignee", "", "--after-sequence", "0",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.addr != "rigger:1" || cfg.eventTypes.String() != "CREATED,ASSIGNED,STATUS_CHANGED" {
		t.Errorf("addr %q, event types %q", cfg.addr, cfg.eventTypes.String())
	}
	if cfg.assignee == nil || *cfg.assignee != "" || cfg.after == nil || *cfg.after != 0 {
		t.Errorf("assignee %v, after %v; want both set", cfg.assignee, cfg.after)
	}

	cfg, err = parseFlags(nil, io.Discard)
	if err != nil || cfg.addr != "localhost:50051" || cfg.assignee != nil || cfg.after != nil {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
	for _, args := range [][]string{
		{"--event-type", "nope"}, {"--after-sequence", "-1"}, {"stray"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded; want an error", args)
		}
	}
}

func TestReadToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("s3cret \r\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readToken(path); got != "s3cret" || err != nil {
		t.Errorf("readToken = %q, %v", got, err)
	}
	t.Setenv("RIGGER_TOKEN", " from-env\n")
	if got, err := readToken(""); got != "from-env" || err != nil {
		t.Errorf("readToken from env = %q, %v", got, err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\nlater\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readToken(empty); err == nil {
		t.Error("an empty first line must be an error")
	}
}

// A token file it cannot use is bad usage, status 2, as in the Python and
// TypeScript sidecars (clients/README.md, "Exit status"); it stops before
// dialling anything.
func TestATokenFileItCannotUseExitsWithStatus2(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\nlater\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing"), empty, dir} {
		var stderr bytes.Buffer
		code := run([]string{"--addr", "127.0.0.1:1", "--token-file", path}, io.Discard, &stderr)
		if code != 2 {
			t.Errorf("--token-file %s: exit status %d, want 2; stderr: %s", path, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), "--token-file "+path+": ") {
			t.Errorf("--token-file %s: stderr does not name the flag and file: %s", path, stderr.String())
		}
	}
}
