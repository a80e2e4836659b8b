package rigger

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
)

// goldenCase is one case of clients/testdata/event-lines.json, with its line
// from event-lines.txt (newline included): the cases every client's tests
// share.
type goldenCase struct {
	Name  string          `json:"name"`
	Event json.RawMessage `json:"event"`
	line  []byte
}

func goldenEventLines(t *testing.T) []goldenCase {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata")
	raw, err := os.ReadFile(filepath.Join(dir, "event-lines.json"))
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("clients/testdata is not here (outside a checkout of the repository)")
	}
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("event-lines.json: %v", err)
	}
	text, err := os.ReadFile(filepath.Join(dir, "event-lines.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(text, []byte("\n")) {
		t.Fatal("event-lines.txt must end with a newline")
	}
	lines := bytes.SplitAfter(text, []byte("\n"))
	lines = lines[:len(lines)-1] // the empty piece after the last newline
	if len(lines) != len(doc.Cases) {
		t.Fatalf("event-lines.txt has %d lines for %d cases", len(lines), len(doc.Cases))
	}
	for i := range doc.Cases {
		doc.Cases[i].line = lines[i]
	}
	return doc.Cases
}

func TestFormatEventPrintsTheGoldenLinesByteForByte(t *testing.T) {
	for _, c := range goldenEventLines(t) {
		t.Run(c.Name, func(t *testing.T) {
			var event riggerv1.TaskEvent
			if err := protojson.Unmarshal(c.Event, &event); err != nil {
				t.Fatalf("event: %v", err)
			}
			if got := []byte(FormatEvent(&event) + "\n"); !bytes.Equal(got, c.line) {
				t.Errorf("\n got %q\nwant %q", got, c.line)
			}
		})
	}
}

func TestQuoteReplacesInvalidUTF8(t *testing.T) {
	if got, want := Quote("a\xffb"), "\"a\uFFFDb\""; got != want {
		t.Errorf("Quote = %q, want %q", got, want)
	}
}
