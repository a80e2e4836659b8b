package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateFileMissingHoldsNoSequenceYet(t *testing.T) {
	if _, ok, err := (stateFile{filepath.Join(t.TempDir(), "state")}).load(); ok || err != nil {
		t.Errorf("load = %v, %v; want nothing and no error", ok, err)
	}
}

func TestStateFileSavesAndLoadsBackLeavingNoTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	state := stateFile{filepath.Join(dir, "state")}
	if err := state.checkWritable(); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{41, 42} {
		if err := state.save(seq); err != nil {
			t.Fatal(err)
		}
	}
	if seq, ok, err := state.load(); seq != 42 || !ok || err != nil {
		t.Errorf("load = %d, %v, %v; want 42", seq, ok, err)
	}
	if data, _ := os.ReadFile(state.path); string(data) != "42\n" {
		t.Errorf("the file holds %q, want \"42\\n\"", data)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want only the state file", len(entries))
	}
}

func TestStateFileTakesASequenceWrittenByHand(t *testing.T) {
	for content, want := range map[string]uint64{"0": 0, "7": 7, " 7 \r\n": 7, "18446744073709551615\n": 1<<64 - 1} {
		path := filepath.Join(t.TempDir(), "state")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if seq, ok, err := (stateFile{path}).load(); seq != want || !ok || err != nil {
			t.Errorf("load(%q) = %d, %v, %v; want %d", content, seq, ok, err, want)
		}
	}
}

func TestStateFileRefusesAnythingButASequence(t *testing.T) {
	for content, reason := range map[string]string{
		"":                                   "is empty",
		" \n":                                "is empty",
		"abc":                                "not a sequence",
		"-1":                                 "not a sequence",
		"+1":                                 "not a sequence",
		"1.5":                                "not a sequence",
		"0x10":                               "not a sequence",
		"1 2":                                "not a sequence",
		"18446744073709551616":               "not a sequence",
		"\u0661\u0662":                       "not a sequence",
		"\xff\x00\x1b[2J":                    "not a sequence",
		strings.Repeat("1", maxStateBytes+1): "more than a sequence",
		"7\n" + strings.Repeat(" ", maxStateBytes): "more than a sequence",
	} {
		path := filepath.Join(t.TempDir(), "state")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := (stateFile{path}).load()
		if err == nil || !strings.Contains(err.Error(), reason) {
			t.Errorf("load(%q) = %v; want an error saying %q", content, err, reason)
		}
		if err != nil && strings.ContainsRune(err.Error(), 0x1b) {
			t.Errorf("load(%q): the error shows the content unescaped: %q", content, err)
		}
	}
}

func TestStateFileInAMissingDirectoryIsFoundBeforeTheFirstSave(t *testing.T) {
	state := stateFile{filepath.Join(t.TempDir(), "gone", "state")}
	if err := state.checkWritable(); err == nil || !strings.Contains(err.Error(), "directory cannot be written") {
		t.Errorf("checkWritable = %v", err)
	}
	if err := state.save(3); err == nil || !strings.Contains(err.Error(), "cannot record #3") {
		t.Errorf("save = %v", err)
	}
}

func TestStateFileSymlinkIsReadThroughAndReplacedNotWrittenThrough(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(target, []byte("5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := stateFile{filepath.Join(dir, "state")}
	if err := os.Symlink(target, state.path); err != nil {
		t.Fatal(err)
	}
	if seq, _, err := state.load(); seq != 5 || err != nil {
		t.Fatalf("load = %d, %v", seq, err)
	}
	if err := state.save(6); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(target); string(data) != "5\n" {
		t.Errorf("the link's target now holds %q", data)
	}
	if info, _ := os.Lstat(state.path); info.Mode()&os.ModeSymlink != 0 {
		t.Error("the state file is still a symlink")
	}
}
