package rigger

import (
	"strconv"
	"strings"

	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
)

// FormatEvent renders the line every Rigger sidecar prints for an event,
// without the newline:
//
//	#<sequence> <TYPE> task=<id> title=<quoted> status=<STATUS> assignee=<quoted or ->
//
// The rules are in clients/README.md ("The event line"); the Python and
// TypeScript clients print exactly the same bytes, which
// clients/testdata/event-lines.txt holds for each client's tests.
func FormatEvent(e *riggerv1.TaskEvent) string {
	task := e.GetTask()
	assignee := "-"
	if task != nil && task.Assignee != nil {
		assignee = Quote(task.GetAssignee())
	}
	var b strings.Builder
	b.WriteByte('#')
	b.WriteString(strconv.FormatUint(e.GetSequence(), 10))
	b.WriteByte(' ')
	b.WriteString(EventTypeName(e.GetEventType()))
	b.WriteString(" task=")
	b.WriteString(taskID(task.GetId()))
	b.WriteString(" title=")
	b.WriteString(Quote(task.GetTitle()))
	b.WriteString(" status=")
	b.WriteString(StatusName(task.GetStatus()))
	b.WriteString(" assignee=")
	b.WriteString(assignee)
	return b.String()
}

// taskID prints an id bare when it is one plain token, as every id the
// Rigger server makes is (printable ASCII without space, quote or
// backslash), "-" when it is empty, and quoted otherwise.
func taskID(id string) string {
	if id == "" {
		return "-"
	}
	if id == "-" {
		return Quote(id)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return Quote(id)
		}
	}
	return id
}

// Quote writes s as a JSON string that stays on one line and displays as
// what it holds: beyond the quote and the backslash, it escapes every
// control character (so a field never ends the line or drives a terminal)
// and the characters that break or reorder a displayed line (U+2028,
// U+2029 and the bidirectional controls). Everything else, non-ASCII
// included, is written as it is. Invalid UTF-8 becomes U+FFFD.
func Quote(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\r':
			b.WriteString(`\r`)
		case escaped(r):
			b.WriteString(`\u`)
			for shift := 12; shift >= 0; shift -= 4 {
				b.WriteByte(hex[r>>shift&0xf])
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// escaped reports whether Quote writes r as \uXXXX: the C0 and C1 controls
// and DEL, the line and paragraph separators, and the bidirectional
// controls (Unicode's Bidi_Control property).
func escaped(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r < 0xa0:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r == 0x2028, r == 0x2029:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
