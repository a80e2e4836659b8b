// Command rigger-sidecar prints every Rigger task event on stdout, one line
// per event, and keeps following the server across disconnects and restarts
// without losing or repeating events.
//
// Each stdout line reads
//
//	#<sequence> <TYPE> task=<id> title=<quoted> status=<STATUS> assignee=<quoted or ->
//
// as rigger.FormatEvent writes it (clients/README.md, "The event line").
//
// It reads the batched stream, or the plain one from a server without it
// (rigger.Watch). With --state-file it records each printed event's sequence
// and resumes after it when restarted (see stateFile).
//
// Status messages go to stderr; a line containing "subscribed" marks each
// subscription that opens. SIGINT and SIGTERM exit 0; an error that retrying
// cannot fix, a closed stdout included, exits 1; bad usage (a token file it
// cannot read among it), or a state file it cannot use, exits 2
// (clients/README.md, "Exit status"). Its flags are shared with the Python
// and TypeScript sidecars.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
	"github.com/rigger-dev/rigger/clients/go/rigger"
)

func main() {
	// A write to a closed stdout then fails with EPIPE, which run reports
	// and exits 1 for, as the other sidecars do, instead of the runtime
	// killing the process with SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is the parsed command line.
type config struct {
	addr       string
	eventTypes eventTypeList
	assignee   *string
	after      *uint64
	caFile     string
	certFile   string
	keyFile    string
	tokenFile  string
	stateFile  string
}

func run(args []string, stdout, stderr io.Writer) int {
	logger := log.New(stderr, "", 0)
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2 // the flag package has already explained
	}
	token, err := readToken(cfg.tokenFile)
	if err != nil {
		logger.Printf("error: %v (see --help)", err)
		return 2 // bad usage, as a flag's bad value is
	}
	var state *stateFile
	if cfg.stateFile != "" {
		state = &stateFile{path: cfg.stateFile}
		recorded, ok, err := state.load()
		if err == nil {
			err = state.checkWritable()
		}
		if err != nil {
			logger.Printf("error: --state-file %s: %v; fix it, or delete it to start afresh", cfg.stateFile, err)
			return 2
		}
		if ok {
			cfg.after = &recorded
		}
	}
	plaintext := cfg.caFile == "" && cfg.certFile == "" && cfg.keyFile == ""
	if token != "" && plaintext && !rigger.IsLoopback(cfg.addr) {
		logger.Printf("warning: sending the token to %s without TLS", cfg.addr)
	}
	conn, err := rigger.Dial(cfg.addr, rigger.Options{
		CAFile:   cfg.caFile,
		CertFile: cfg.certFile,
		KeyFile:  cfg.keyFile,
		Token:    token,
	})
	if err != nil {
		logger.Printf("error: %v", err)
		return 1
	}
	defer conn.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once the first signal is in, a second one gets the default behaviour
	// and kills the process, should a clean stop ever hang.
	context.AfterFunc(ctx, stop)

	req := &riggerv1.SubscribeToTaskEventsRequest{
		EventTypes:     cfg.eventTypes,
		AssigneeFilter: cfg.assignee,
		AfterSequence:  cfg.after,
	}
	// A state file that cannot be written ends the watch from inside a hook.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var stateErr error
	record := func(sequence uint64) bool {
		if state == nil {
			return true
		}
		if err := state.save(sequence); err != nil {
			stateErr = err
			stopWatch()
			return false
		}
		return true
	}
	opts := rigger.WatchOptions{
		OnSubscribed: func(after *uint64) {
			logger.Printf("subscribed to %s (%s)", cfg.addr, describe(req, after))
		},
		OnReconnect: func(err error, delay time.Duration) {
			logger.Printf("%s; reconnecting in %d ms", describeFailure(err), delay.Milliseconds())
		},
		OnFallback: func(err error) {
			logger.Printf("the server has no SubscribeToTaskEventBatches (UNIMPLEMENTED: %s); reading SubscribeToTaskEvents", status.Convert(err).Message())
		},
		// A live start records the head it resumes after, so a restart
		// before the first event misses nothing either.
		OnHead: func(head uint64) { record(head) },
	}
	for event, err := range rigger.Watch(watchCtx, riggerv1.NewRiggerServiceClient(conn), req, opts) {
		if err != nil {
			logger.Print("error: " + describeError(err))
			return 1
		}
		// One unbuffered write per line, so each event reaches a pipe at once
		// and whole.
		if _, err := io.WriteString(stdout, rigger.FormatEvent(event)+"\n"); err != nil {
			logger.Printf("error: writing stdout: %v", err)
			return 1
		}
		// Recorded only once printed: a kill in between repeats this line
		// after a restart, never loses it.
		if !record(event.GetSequence()) {
			break
		}
	}
	if stateErr != nil {
		logger.Printf("error: --state-file %s: %v", cfg.stateFile, stateErr)
		return 1
	}
	if ctx.Err() == nil {
		logger.Print("error: event stream ended unexpectedly")
		return 1
	}
	logger.Print("stopped")
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("rigger-sidecar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "localhost:50051", "server address (any gRPC target)")
	fs.Var(&cfg.eventTypes, "event-type", "only this event type: CREATED, TASK_EVENT_TYPE_CREATED or a number (repeatable)")
	fs.Func("assignee", "only events whose task is assigned to exactly this assignee", func(s string) error {
		cfg.assignee = &s
		return nil
	})
	fs.Func("after-sequence", "replay stored events after this sequence first (0: the whole log); default live only", func(s string) error {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return errors.New("must be a non-negative integer")
		}
		cfg.after = &n
		return nil
	})
	fs.StringVar(&cfg.caFile, "ca-file", "", "PEM CA bundle to verify the server; enables TLS")
	fs.StringVar(&cfg.certFile, "cert-file", "", "PEM client certificate for mutual TLS; enables TLS")
	fs.StringVar(&cfg.keyFile, "key-file", "", "PEM client key for mutual TLS")
	fs.StringVar(&cfg.tokenFile, "token-file", "", "file whose first line is the bearer token (default: $RIGGER_TOKEN)")
	fs.StringVar(&cfg.stateFile, "state-file", "", "record the sequence of each printed event in `PATH` (replaced atomically) and, when PATH exists at start, resume after it instead of --after-sequence; after a kill at most the last line printed is printed again (default: no state file)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q", fs.Arg(0))
		fmt.Fprintln(stderr, err)
		fs.Usage()
		return nil, err
	}
	return cfg, nil
}

// readToken takes the first line of path, or $RIGGER_TOKEN when no file is
// given. An empty result means no token.
func readToken(path string) (string, error) {
	if path == "" {
		return strings.TrimSpace(os.Getenv("RIGGER_TOKEN")), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	token := strings.TrimSpace(line)
	if token == "" {
		return "", fmt.Errorf("--token-file %s: the first line is empty", path)
	}
	return token, nil
}

// eventTypeList collects repeated --event-type flags.
type eventTypeList []riggerv1.TaskEventType

func (l *eventTypeList) String() string {
	names := make([]string, len(*l))
	for i, t := range *l {
		names[i] = rigger.EventTypeName(t)
	}
	return strings.Join(names, ",")
}

func (l *eventTypeList) Set(s string) error {
	t, err := rigger.ParseEventType(s)
	if err != nil {
		return err
	}
	*l = append(*l, t)
	return nil
}

// describe summarizes a subscription for the "subscribed" status line.
func describe(req *riggerv1.SubscribeToTaskEventsRequest, after *uint64) string {
	parts := []string{"live"}
	if after != nil {
		parts[0] = fmt.Sprintf("resuming after #%d", *after)
	}
	if len(req.EventTypes) > 0 {
		types := eventTypeList(req.EventTypes)
		parts = append(parts, "types "+types.String())
	}
	if req.AssigneeFilter != nil {
		parts = append(parts, "assignee "+rigger.Quote(*req.AssigneeFilter))
	}
	return strings.Join(parts, ", ")
}

// describeFailure says why a subscription ended, for reconnect notices.
func describeFailure(err error) string {
	if errors.Is(err, rigger.ErrStreamEnded) {
		return "stream ended by the server"
	}
	return "stream failed: " + describeError(err)
}

// describeError names the status code the way the protocol spells it
// (UNAVAILABLE, not Unavailable), as the other sidecars do.
func describeError(err error) string {
	s, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	return codeName(s.Code()) + ": " + s.Message()
}

var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

func codeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return "CODE_" + strconv.Itoa(int(c))
}
