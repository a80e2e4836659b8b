package rigger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
)

func TestBackoffDelay(t *testing.T) {
	b := DefaultBackoff
	for _, c := range []struct {
		retries int
		random  float64
		want    time.Duration
	}{
		{0, 0, 100 * time.Millisecond},
		{0, 0.5, 90 * time.Millisecond},
		{1, 0, 200 * time.Millisecond},
		{3, 0, 800 * time.Millisecond},
		{5, 0, 3200 * time.Millisecond},
		{6, 0, 5 * time.Second},
		{6, 0.5, 4500 * time.Millisecond},
		{1 << 20, 0, 5 * time.Second},
		{-1, 0, 100 * time.Millisecond},
	} {
		if got := b.delay(c.retries, c.random); got != c.want {
			t.Errorf("delay(%d, %v) = %v, want %v", c.retries, c.random, got, c.want)
		}
	}
	if got := (Backoff{}).delay(0, 0); got != DefaultBackoff.Initial {
		t.Errorf("zero Backoff: delay(0) = %v, want %v", got, DefaultBackoff.Initial)
	}
	for i := range 100 {
		if d := b.Delay(i % 10); d <= 0 || d > b.Max {
			t.Fatalf("Delay(%d) = %v, outside (0, %v]", i%10, d, b.Max)
		}
	}
}

// reconnectTable reads the table of retried status codes from
// clients/README.md ("Reconnecting"), which every Rigger client follows.
func reconnectTable(t *testing.T) map[string]bool {
	t.Helper()
	text, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("clients/README.md is not here (outside a checkout of the repository)")
	}
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\| (yes|no) \\|")
	table := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(text), -1) {
		table[m[1]] = m[2] == "yes"
	}
	return table
}

func TestRetryableFollowsTheDocumentedTable(t *testing.T) {
	table := reconnectTable(t)
	if len(table) != 17 {
		t.Fatalf("the table has %d status codes, want all 17: %v", len(table), table)
	}
	for name, want := range table {
		var err error
		if name == "OK" {
			err = ErrStreamEnded // the server ended the stream
		} else {
			code, ok := codeNamed(name)
			if !ok {
				t.Errorf("the table names an unknown status code %s", name)
				continue
			}
			err = status.Error(code, "")
		}
		if got := Retryable(err); got != want {
			t.Errorf("Retryable(%s) = %v, the table says %v", name, got, want)
		}
	}
}

// codeNamed finds a status code by its canonical gRPC name (INVALID_ARGUMENT);
// grpc-go spells them InvalidArgument, and CANCELLED as Canceled.
func codeNamed(name string) (codes.Code, bool) {
	if name == "CANCELLED" {
		return codes.Canceled, true
	}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.EqualFold(strings.ReplaceAll(name, "_", ""), c.String()) {
			return c, true
		}
	}
	return 0, false
}

func TestRetryableEndsWhatTheCallerCancelled(t *testing.T) {
	for err, want := range map[error]bool{
		io.EOF:           true,
		context.Canceled: false,
		fmt.Errorf("wrapped: %w", context.Canceled):                false,
		grpc.ErrClientConnClosing:                                  false, //nolint:staticcheck // what a closed connection reports
		status.Error(codes.Canceled, "stream reset by the server"): true,
	} {
		if got := Retryable(err); got != want {
			t.Errorf("Retryable(%v) = %v, want %v", err, got, want)
		}
	}
}

// step scripts one SubscribeToTaskEvents call: what it expects as
// after_sequence, and what it answers.
type step struct {
	wantAfter *uint64
	openErr   error    // returned by SubscribeToTaskEvents
	events    []uint64 // sequences, then recvErr
	recvErr   error    // nil: block until the call is cancelled
	block     bool     // block in SubscribeToTaskEvents until cancelled
	noHeaders bool     // refused: the stream ends without headers
	lateHead  bool     // an old server: no headers before the first event
	head      string   // the rigger-head-sequence header, if not empty
}

// fakeClient plays steps on the stream the watch should read: the batched
// one (each message carrying up to two events), or with plain the plain one.
type fakeClient struct {
	riggerv1.RiggerServiceClient // only the two subscriptions are used
	t                            *testing.T
	plain                        bool
	steps                        []step
	calls                        int
	lastCtx                      context.Context
}

func (c *fakeClient) SubscribeToTaskEvents(ctx context.Context, req *riggerv1.SubscribeToTaskEventsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[riggerv1.TaskEvent], error) {
	if !c.plain {
		c.t.Errorf("subscription #%d: a batched watch called SubscribeToTaskEvents", c.calls+1)
	}
	stream, err := c.open(ctx, req.AfterSequence)
	if err != nil {
		return nil, err
	}
	return stream, nil
}

func (c *fakeClient) SubscribeToTaskEventBatches(ctx context.Context, req *riggerv1.SubscribeToTaskEventBatchesRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[riggerv1.SubscribeToTaskEventBatchesResponse], error) {
	if c.plain {
		c.t.Errorf("subscription #%d: a plain watch called SubscribeToTaskEventBatches", c.calls+1)
	}
	stream, err := c.open(ctx, req.AfterSequence)
	if err != nil {
		return nil, err
	}
	return &fakeBatchStream{stream}, nil
}

func (c *fakeClient) open(ctx context.Context, after *uint64) (*fakeStream, error) {
	if c.calls >= len(c.steps) {
		c.t.Fatalf("unexpected subscription #%d", c.calls+1)
	}
	s := c.steps[c.calls]
	c.calls++
	c.lastCtx = ctx
	if got, want := fmtAfter(after), fmtAfter(s.wantAfter); got != want {
		c.t.Errorf("subscription #%d: after_sequence = %s, want %s", c.calls, got, want)
	}
	if s.block {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if s.openErr != nil {
		return nil, s.openErr
	}
	return &fakeStream{ctx: ctx, events: s.events, err: s.recvErr, noHeaders: s.noHeaders, lateHead: s.lateHead, head: s.head}, nil
}

type fakeStream struct {
	grpc.ClientStream // only Recv is used
	ctx               context.Context
	events            []uint64
	err               error
	noHeaders         bool
	lateHead          bool
	head              string
}

func (s *fakeStream) Header() (metadata.MD, error) {
	if s.noHeaders {
		return nil, nil
	}
	if s.lateHead {
		<-s.ctx.Done()
		return nil, nil
	}
	if s.head != "" {
		return metadata.Pairs(headSequenceKey, s.head), nil
	}
	return metadata.MD{}, nil
}

func (s *fakeStream) Recv() (*riggerv1.TaskEvent, error) {
	if len(s.events) > 0 {
		seq := s.events[0]
		s.events = s.events[1:]
		return &riggerv1.TaskEvent{Sequence: seq}, nil
	}
	if s.err != nil {
		return nil, s.err
	}
	<-s.ctx.Done()
	return nil, status.FromContextError(s.ctx.Err()).Err()
}

type fakeBatchStream struct {
	*fakeStream
}

func (s *fakeBatchStream) Recv() (*riggerv1.SubscribeToTaskEventBatchesResponse, error) {
	batch := &riggerv1.SubscribeToTaskEventBatchesResponse{}
	for len(batch.Events) < 2 && len(s.events) > 0 {
		event, _ := s.fakeStream.Recv()
		batch.Events = append(batch.Events, event)
	}
	if len(batch.Events) > 0 {
		return batch, nil
	}
	_, err := s.fakeStream.Recv()
	return nil, err
}

func fmtAfter(after *uint64) string {
	if after == nil {
		return "absent"
	}
	return fmt.Sprint(*after)
}

func ptr(n uint64) *uint64 { return &n }

var fastBackoff = Backoff{Initial: time.Millisecond, Max: 2 * time.Millisecond}

// bothStreams runs a test once per stream: Watch resumes and retries the
// same way on each.
func bothStreams(t *testing.T, test func(t *testing.T, plain bool)) {
	for _, plain := range []bool{false, true} {
		name := "batched"
		if plain {
			name = "plain"
		}
		t.Run(name, func(t *testing.T) { test(t, plain) })
	}
}

// collect ranges over Watch and returns the sequences and the final error.
// A fakeClient's stream decides which stream the watch reads.
func collect(ctx context.Context, client riggerv1.RiggerServiceClient, req *riggerv1.SubscribeToTaskEventsRequest, opts WatchOptions) ([]uint64, error) {
	if fake, ok := client.(*fakeClient); ok {
		opts.Plain = fake.plain
	}
	var seqs []uint64
	for event, err := range Watch(ctx, client, req, opts) {
		if err != nil {
			return seqs, err
		}
		seqs = append(seqs, event.GetSequence())
	}
	return seqs, nil
}

func TestWatchResumesAfterLastEventAndDedupes(t *testing.T) {
	bothStreams(t, func(t *testing.T, plain bool) {
		client := &fakeClient{t: t, plain: plain, steps: []step{
			{wantAfter: nil, events: []uint64{1, 2}, recvErr: status.Error(codes.Unavailable, "server is shutting down")},
			{wantAfter: ptr(2), openErr: status.Error(codes.Unavailable, "connection refused")},
			{wantAfter: ptr(2), events: []uint64{2, 1, 3}, recvErr: io.EOF},
			{wantAfter: ptr(3), events: []uint64{4}, recvErr: status.Error(codes.ResourceExhausted, "lagged")},
			{wantAfter: ptr(4), recvErr: status.Error(codes.InvalidArgument, "bad filter"), noHeaders: true},
		}}
		var subscribed []string
		var reconnects []error
		seqs, err := collect(testContext(t), client, &riggerv1.SubscribeToTaskEventsRequest{}, WatchOptions{
			Backoff:      fastBackoff,
			OnSubscribed: func(after *uint64) { subscribed = append(subscribed, fmtAfter(after)) },
			OnReconnect:  func(err error, _ time.Duration) { reconnects = append(reconnects, err) },
		})
		if fmt.Sprint(seqs) != "[1 2 3 4]" {
			t.Errorf("events = %v, want [1 2 3 4]", seqs)
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("final error = %v, want INVALID_ARGUMENT", err)
		}
		if fmt.Sprint(subscribed) != "[absent 2 3]" {
			t.Errorf("OnSubscribed saw %v", subscribed)
		}
		if len(reconnects) != 4 || !errors.Is(reconnects[2], ErrStreamEnded) {
			t.Errorf("OnReconnect saw %v", reconnects)
		}
	})
}

func TestWatchKeepsCallersAfterSequenceUntilFirstEvent(t *testing.T) {
	bothStreams(t, func(t *testing.T, plain bool) {
		client := &fakeClient{t: t, plain: plain, steps: []step{
			{wantAfter: ptr(5), openErr: status.Error(codes.Unavailable, "down")},
			{wantAfter: ptr(5), events: []uint64{5, 6}, recvErr: status.Error(codes.Internal, "RST_STREAM")},
			{wantAfter: ptr(6), openErr: status.Error(codes.Unauthenticated, "no token")},
		}}
		seqs, err := collect(testContext(t), client, &riggerv1.SubscribeToTaskEventsRequest{AfterSequence: ptr(5)}, WatchOptions{Backoff: fastBackoff})
		if fmt.Sprint(seqs) != "[6]" || status.Code(err) != codes.Unauthenticated {
			t.Errorf("got %v, %v; want [6], UNAUTHENTICATED", seqs, err)
		}
	})
}

func TestWatchStopsPromptlyOnCancel(t *testing.T) {
	bothStreams(t, func(t *testing.T, plain bool) {
		client := &fakeClient{t: t, plain: plain, steps: []step{{events: []uint64{1}}}}
		ctx, cancel := context.WithCancel(testContext(t))
		time.AfterFunc(20*time.Millisecond, cancel)
		start := time.Now()
		seqs, err := collect(ctx, client, nil, WatchOptions{})
		if err != nil || fmt.Sprint(seqs) != "[1]" {
			t.Errorf("got %v, %v; want [1] and no error", seqs, err)
		}
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("took %v to stop", elapsed)
		}
	})
}

func TestWatchCancelDuringBackoff(t *testing.T) {
	bothStreams(t, func(t *testing.T, plain bool) {
		client := &fakeClient{t: t, plain: plain, steps: []step{{openErr: status.Error(codes.Unavailable, "down")}}}
		ctx, cancel := context.WithCancel(testContext(t))
		start := time.Now()
		_, err := collect(ctx, client, nil, WatchOptions{
			Backoff:     Backoff{Initial: time.Hour, Max: time.Hour},
			OnReconnect: func(error, time.Duration) { cancel() },
		})
		if err != nil || time.Since(start) > time.Second {
			t.Errorf("got %v after %v; want a prompt stop without error", err, time.Since(start))
		}
	})
}

func TestWatchConnectTimeoutIsRetried(t *testing.T) {
	bothStreams(t, func(t *testing.T, plain bool) {
		client := &fakeClient{t: t, plain: plain, steps: []step{
			{block: true},
			{openErr: status.Error(codes.PermissionDenied, "no")},
		}}
		var reconnects []error
		_, err := collect(testContext(t), client, nil, WatchOptions{
			Backoff:        fastBackoff,
			ConnectTimeout: 10 * time.Millisecond,
			OnReconnect:    func(err error, _ time.Duration) { reconnects = append(reconnects, err) },
		})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("final error = %v, want PERMISSION_DENIED", err)
		}
		if len(reconnects) != 1 || status.Code(reconnects[0]) != codes.DeadlineExceeded {
			t.Errorf("OnReconnect saw %v, want one DEADLINE_EXCEEDED", reconnects)
		}
	})
}

func TestWatchBreakCancelsStream(t *testing.T) {
	bothStreams(t, func(t *testing.T, plain bool) {
		client := &fakeClient{t: t, plain: plain, steps: []step{{events: []uint64{1, 2, 3}}}}
		for range Watch(testContext(t), client, nil, WatchOptions{Plain: plain}) {
			break
		}
		if client.lastCtx.Err() == nil {
			t.Error("the stream's context is still live after break")
		}
	})
}

func TestWatchAssumesSubscribedWithoutEarlyHeaders(t *testing.T) {
	bothStreams(t, func(t *testing.T, plain bool) {
		defer func(wait time.Duration) { registrationWait = wait }(registrationWait)
		registrationWait = 10 * time.Millisecond
		client := &fakeClient{t: t, plain: plain, steps: []step{{lateHead: true}}}
		ctx, cancel := context.WithCancel(testContext(t))
		subscribed := 0
		_, err := collect(ctx, client, nil, WatchOptions{
			OnSubscribed: func(*uint64) { subscribed++; cancel() },
		})
		if err != nil || subscribed != 1 {
			t.Errorf("got %v and %d OnSubscribed calls; want no error and 1", err, subscribed)
		}
	})
}

func TestWatchLiveOnlyResumesAfterRegisteredHead(t *testing.T) {
	bothStreams(t, func(t *testing.T, plain bool) {
		client := &fakeClient{t: t, plain: plain, steps: []step{
			// Registered at head 7, then cut off before any event.
			{wantAfter: nil, head: "7", recvErr: status.Error(codes.Unavailable, "server is shutting down")},
			// Refused before registering: no headers, so the head stays 7.
			{wantAfter: ptr(7), openErr: status.Error(codes.Unavailable, "connection refused")},
			// A replayed duplicate at the head is dropped.
			{wantAfter: ptr(7), head: "9", events: []uint64{7, 8, 9}, recvErr: io.EOF},
			// Once events arrived, the last one wins over any later head.
			{wantAfter: ptr(9), head: "12", recvErr: status.Error(codes.InvalidArgument, "stop")},
		}}
		seqs, err := collect(testContext(t), client, &riggerv1.SubscribeToTaskEventsRequest{}, WatchOptions{Backoff: fastBackoff})
		if fmt.Sprint(seqs) != "[8 9]" || status.Code(err) != codes.InvalidArgument {
			t.Errorf("got %v, %v; want [8 9], INVALID_ARGUMENT", seqs, err)
		}
	})
}

func TestWatchLiveOnlyWithoutHeadStaysLiveOnly(t *testing.T) {
	bothStreams(t, func(t *testing.T, plain bool) {
		client := &fakeClient{t: t, plain: plain, steps: []step{
			// A server without the header, or with a value that is no sequence.
			{wantAfter: nil, recvErr: status.Error(codes.Unavailable, "down")},
			{wantAfter: nil, head: "soon", recvErr: status.Error(codes.Unavailable, "down")},
			{wantAfter: nil, recvErr: status.Error(codes.PermissionDenied, "no")},
		}}
		_, err := collect(testContext(t), client, nil, WatchOptions{Backoff: fastBackoff})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("final error = %v, want PERMISSION_DENIED", err)
		}
	})
}

// testContext is cancelled when the test ends, like t.Context, which needs
// Go 1.24; the module supports Go 1.23.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}
