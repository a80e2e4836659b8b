package rigger

import (
	"fmt"
	"strconv"
	"strings"

	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
)

const (
	eventTypePrefix = "TASK_EVENT_TYPE_"
	statusPrefix    = "TASK_STATUS_"
)

// ParseEventType accepts an event type as its short name ("CREATED"), its
// full enum name ("TASK_EVENT_TYPE_CREATED"), either in any case, or its
// number. Numbers this client does not know are accepted, so a newer server's
// types can be asked for before the client is regenerated.
func ParseEventType(s string) (riggerv1.TaskEventType, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 32); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("event type %q: must not be negative", s)
		}
		return riggerv1.TaskEventType(n), nil
	}
	name := strings.ToUpper(s)
	if v, ok := riggerv1.TaskEventType_value[name]; ok {
		return riggerv1.TaskEventType(v), nil
	}
	if v, ok := riggerv1.TaskEventType_value[eventTypePrefix+name]; ok && name != "" {
		return riggerv1.TaskEventType(v), nil
	}
	return 0, fmt.Errorf("unknown event type %q (want one of %s, or a number)", s, strings.Join(eventTypeNames(), ", "))
}

// EventTypeName is the enum name without its TASK_EVENT_TYPE_ prefix
// ("CREATED"), or the number for values this client does not know.
func EventTypeName(t riggerv1.TaskEventType) string {
	return shortName(riggerv1.TaskEventType_name, int32(t), eventTypePrefix)
}

// StatusName is the enum name without its TASK_STATUS_ prefix
// ("IN_PROGRESS"), or the number for values this client does not know.
func StatusName(s riggerv1.TaskStatus) string {
	return shortName(riggerv1.TaskStatus_name, int32(s), statusPrefix)
}

func shortName(names map[int32]string, v int32, prefix string) string {
	if name, ok := names[v]; ok {
		return strings.TrimPrefix(name, prefix)
	}
	return strconv.FormatInt(int64(v), 10)
}

// eventTypeNames lists the short names in enum order, for error messages.
func eventTypeNames() []string {
	var names []string
	for i := int32(1); ; i++ {
		name, ok := riggerv1.TaskEventType_name[i]
		if !ok {
			return names
		}
		names = append(names, strings.TrimPrefix(name, eventTypePrefix))
	}
}
