package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
)

func TestFormatEvent(t *testing.T) {
	for _, c := range []struct {
		event *riggerv1.TaskEvent
		want  string
	}{
		{
			&riggerv1.TaskEvent{
				Sequence:  3,
				EventType: riggerv1.TaskEventType_TASK_EVENT_TYPE_STATUS_CHANGED,
				Task: &riggerv1.Task{
					Id:       "5b1c",
					Title:    `Ship "v1" ✓ <b>&`,
					Status:   riggerv1.TaskStatus_TASK_STATUS_IN_PROGRESS,
					Assignee: proto.String("Ålice"),
				},
			},
			`#3 STATUS_CHANGED task=5b1c title="Ship \"v1\" ✓ <b>&" status=IN_PROGRESS assignee="Ålice"` + "\n",
		},
		{
			&riggerv1.TaskEvent{Sequence: 9, EventType: 77, Task: &riggerv1.Task{Id: "x", Title: "a\tb", Status: 42}},
			`#9 77 task=x title="a\tb" status=42 assignee=-` + "\n",
		},
		{
			&riggerv1.TaskEvent{Sequence: 1, Task: &riggerv1.Task{Id: "y", Assignee: proto.String("")}},
			`#1 UNSPECIFIED task=y title="" status=UNSPECIFIED assignee=""` + "\n",
		},
		{
			&riggerv1.TaskEvent{Sequence: 2, EventType: riggerv1.TaskEventType_TASK_EVENT_TYPE_DELETED},
			`#2 DELETED task=- title="" status=UNSPECIFIED assignee=-` + "\n",
		},
	} {
		if got := formatEvent(c.event); got != c.want {
			t.Errorf("formatEvent:\n got %q\nwant %q", got, c.want)
		}
	}
}

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
