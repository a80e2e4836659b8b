package rigger

import (
	"testing"

	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
)

func TestParseEventType(t *testing.T) {
	for in, want := range map[string]riggerv1.TaskEventType{
		"CREATED":                        riggerv1.TaskEventType_TASK_EVENT_TYPE_CREATED,
		"status_changed":                 riggerv1.TaskEventType_TASK_EVENT_TYPE_STATUS_CHANGED,
		"TASK_EVENT_TYPE_DELETED":        riggerv1.TaskEventType_TASK_EVENT_TYPE_DELETED,
		"task_event_type_assigned":       riggerv1.TaskEventType_TASK_EVENT_TYPE_ASSIGNED,
		" Updated ":                      riggerv1.TaskEventType_TASK_EVENT_TYPE_UPDATED,
		"4":                              riggerv1.TaskEventType_TASK_EVENT_TYPE_STATUS_CHANGED,
		"42":                             42, // a newer server's type
		"UNSPECIFIED":                    riggerv1.TaskEventType_TASK_EVENT_TYPE_UNSPECIFIED,
		"TASK_EVENT_TYPE_ORCHESTRATED":   riggerv1.TaskEventType_TASK_EVENT_TYPE_ORCHESTRATED,
		"task_event_type_decomposed\t\n": riggerv1.TaskEventType_TASK_EVENT_TYPE_DECOMPOSED,
	} {
		got, err := ParseEventType(in)
		if err != nil || got != want {
			t.Errorf("ParseEventType(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "CREATE", "TASK_EVENT_TYPE_", "TASK_STATUS_TODO", "99999999999"} {
		if got, err := ParseEventType(in); err == nil {
			t.Errorf("ParseEventType(%q) = %v; want an error", in, got)
		}
	}
}

func TestNames(t *testing.T) {
	cases := []struct{ got, want string }{
		{EventTypeName(riggerv1.TaskEventType_TASK_EVENT_TYPE_STATUS_CHANGED), "STATUS_CHANGED"},
		{EventTypeName(riggerv1.TaskEventType_TASK_EVENT_TYPE_UNSPECIFIED), "UNSPECIFIED"},
		{EventTypeName(99), "99"},
		{StatusName(riggerv1.TaskStatus_TASK_STATUS_IN_PROGRESS), "IN_PROGRESS"},
		{StatusName(riggerv1.TaskStatus_TASK_STATUS_PENDING_COMPREHENSION_TEST), "PENDING_COMPREHENSION_TEST"},
		{StatusName(-3), "-3"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
