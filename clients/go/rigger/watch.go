package rigger

import (
	"context"
	"errors"
	"io"
	"iter"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
)

// ErrStreamEnded reports that the server closed an event stream with an OK
// status. The contract says streams run until the client cancels, so Watch
// treats it like a disconnect and resubscribes.
var ErrStreamEnded = errors.New("rigger: event stream ended by the server")

// errStopped means the consumer stopped ranging over the events.
var errStopped = errors.New("rigger: watch stopped by consumer")

// DefaultConnectTimeout bounds how long Watch waits for one subscription to
// open before counting the attempt as failed (DEADLINE_EXCEEDED) and retrying.
const DefaultConnectTimeout = 10 * time.Second

// WatchOptions tunes Watch. The zero value is ready to use. Hooks run on the
// goroutine ranging over Watch, so they must not block for long.
type WatchOptions struct {
	// OnSubscribed is called each time the server has registered a
	// subscription, with the after_sequence it was opened with: nil for live
	// events only. From then on no committed event is missed.
	OnSubscribed func(afterSequence *uint64)
	// OnReconnect is called when a subscription ended with a retryable
	// error, before Watch waits delay and subscribes again.
	OnReconnect func(err error, delay time.Duration)
	// Backoff spaces reconnect attempts; the zero value means DefaultBackoff.
	Backoff Backoff
	// ConnectTimeout bounds opening one subscription; 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// CallOptions are passed to every subscription call.
	CallOptions []grpc.CallOption
	// Plain makes Watch read SubscribeToTaskEvents only. By default it reads
	// SubscribeToTaskEventBatches, which carries every event queued for the
	// subscriber in one message, and falls back to SubscribeToTaskEvents
	// for the rest of the watch when the server answers UNIMPLEMENTED (a
	// server from before the batched stream).
	Plain bool
	// OnFallback is called with the server's UNIMPLEMENTED answer when
	// Watch switches to SubscribeToTaskEvents; it resubscribes at once,
	// resuming as after any other ending.
	OnFallback func(err error)
	// OnHead is called when a live-only watch learns the head sequence its
	// subscription was registered at: until an event arrives, Watch resumes
	// after it, so a caller that records its position records that one.
	OnHead func(head uint64)
}

// Watch subscribes to task events and yields them in sequence order, each
// once, resubscribing across disconnects and server restarts. It reads the
// batched stream, SubscribeToTaskEventBatches, unless opts.Plain is set or
// the server lacks it (see WatchOptions.Plain), and yields its events one by
// one.
//
// Watch remembers the sequence of the last event it yielded and resubscribes
// with after_sequence set to it, so the server replays exactly what was
// missed. Until the first event arrives it resubscribes with req's own
// after_sequence. When that is absent (live only), it resubscribes after the
// head sequence the server reported on registering the subscription (the
// response header rigger-head-sequence), so events committed while
// disconnected are replayed even before the first event; only a server that
// does not send that header gets a live-only resubscription, which can miss
// them. Events at or below the last sequence seen are dropped, should a
// server ever repeat one.
//
// Retryable failures (see Retryable) are retried with exponential backoff,
// reset by every new event. Any other error is yielded once, with a nil
// event, and ends the sequence. Cancelling ctx ends the sequence promptly
// without an error; breaking out of the loop cancels the stream.
func Watch(ctx context.Context, client riggerv1.RiggerServiceClient, req *riggerv1.SubscribeToTaskEventsRequest, opts WatchOptions) iter.Seq2[*riggerv1.TaskEvent, error] {
	return func(yield func(*riggerv1.TaskEvent, error) bool) {
		w := &watcher{client: client, opts: opts, req: &riggerv1.SubscribeToTaskEventsRequest{}}
		if req != nil {
			w.req = proto.CloneOf(req)
		}
		if w.opts.ConnectTimeout <= 0 {
			w.opts.ConnectTimeout = DefaultConnectTimeout
		}
		if after := w.req.AfterSequence; after != nil {
			w.seen, w.last = true, *after
		}
		w.run(ctx, yield)
	}
}

// Retryable reports whether Watch resubscribes after err ends a
// subscription. The rules are the table in clients/README.md
// ("Reconnecting"), the same in every Rigger client: the stream ending, the
// server going away or shutting down (UNAVAILABLE), the server cutting off a
// lagging subscriber (RESOURCE_EXHAUSTED), a subscription that could not
// open in time (DEADLINE_EXCEEDED), and transport resets (CANCELLED from the
// server or a proxy, INTERNAL, UNKNOWN, ABORTED). Everything else, such as
// INVALID_ARGUMENT or UNAUTHENTICATED, needs the caller to change something.
// The caller's own cancellation is final: its context (Watch checks that
// first) or a connection it closed.
func Retryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, io.EOF), errors.Is(err, ErrStreamEnded):
		return true
	case errors.Is(err, context.Canceled), errors.Is(err, grpc.ErrClientConnClosing): //nolint:staticcheck // the one way to tell a closed connection from a remote CANCELLED
		return false
	}
	return retryableCodes[status.Code(err)]
}

// retryableCodes is the table in clients/README.md; watch_test.go checks
// this map against it.
var retryableCodes = map[codes.Code]bool{
	codes.Canceled:          true,
	codes.Unknown:           true,
	codes.DeadlineExceeded:  true,
	codes.ResourceExhausted: true,
	codes.Aborted:           true,
	codes.Internal:          true,
	codes.Unavailable:       true,
}

// headSequenceKey is the response header in which the server reports the
// newest committed event when it registered a subscription.
const headSequenceKey = "rigger-head-sequence"

type watcher struct {
	client       riggerv1.RiggerServiceClient
	opts         WatchOptions
	req          *riggerv1.SubscribeToTaskEventsRequest
	seen         bool   // whether last holds a sequence to resume after
	last         uint64 // sequence of the last event yielded (or req's after_sequence)
	headReported bool   // whether OnHead was called
}

func (w *watcher) run(ctx context.Context, yield func(*riggerv1.TaskEvent, error) bool) {
	retries := 0
	for {
		received, err := w.subscribe(ctx, yield)
		if ctx.Err() != nil || errors.Is(err, errStopped) {
			return
		}
		if !w.opts.Plain && status.Code(err) == codes.Unimplemented {
			// Not a failure: this server predates the batched stream.
			w.opts.Plain = true
			if w.opts.OnFallback != nil {
				w.opts.OnFallback(err)
			}
			continue
		}
		if !Retryable(err) {
			yield(nil, err)
			return
		}
		if received {
			retries = 0
		}
		delay := w.opts.Backoff.Delay(retries)
		retries++
		if w.opts.OnReconnect != nil {
			w.opts.OnReconnect(err, delay)
		}
		if !sleep(ctx, delay) {
			return
		}
	}
}

// subscribe runs one subscription until it fails or the consumer stops, and
// reports whether it yielded any event.
func (w *watcher) subscribe(ctx context.Context, yield func(*riggerv1.TaskEvent, error) bool) (received bool, err error) {
	req := proto.CloneOf(w.req)
	if w.seen {
		req.AfterSequence = proto.Uint64(w.last)
	}
	// The connect timeout must not become the stream's deadline, which would
	// end a healthy subscription; a timer that cancels the attempt bounds only
	// the opening.
	attemptCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.AfterFunc(w.opts.ConnectTimeout, cancel)
	stream, err := w.open(attemptCtx, req)
	if !timer.Stop() && ctx.Err() == nil {
		msg := "rigger: subscription not open after " + w.opts.ConnectTimeout.String()
		if err != nil {
			msg += ": " + status.Convert(err).Message()
		}
		return false, status.Error(codes.DeadlineExceeded, msg)
	}
	if err != nil {
		return false, err
	}
	headers := readHeaders(stream)
	if headers.await(registrationWait) {
		if headers.done {
			w.reportHead(headers.md)
		}
		if w.opts.OnSubscribed != nil {
			w.opts.OnSubscribed(req.AfterSequence)
		}
	}
	for {
		events, err := stream.next()
		if err != nil {
			if !w.seen {
				// Still live-only and nothing received: resume after the
				// head the server registered this subscription at. The
				// stream is over, so cancelling only ensures Header returns.
				cancel()
				w.resumeAfterHead(headers.get())
			}
			if errors.Is(err, io.EOF) {
				err = ErrStreamEnded
			}
			return received, err
		}
		for _, event := range events {
			if w.seen && event.GetSequence() <= w.last {
				continue
			}
			w.seen, w.last, received = true, event.GetSequence(), true
			if !yield(event, nil) {
				return received, errStopped
			}
		}
	}
}

// eventStream is one open subscription, plain or batched, read a message at
// a time.
type eventStream interface {
	grpc.ClientStream
	next() ([]*riggerv1.TaskEvent, error)
}

type plainStream struct {
	grpc.ServerStreamingClient[riggerv1.TaskEvent]
}

func (s plainStream) next() ([]*riggerv1.TaskEvent, error) {
	event, err := s.Recv()
	if err != nil {
		return nil, err
	}
	return []*riggerv1.TaskEvent{event}, nil
}

type batchStream struct {
	grpc.ServerStreamingClient[riggerv1.SubscribeToTaskEventBatchesResponse]
}

func (s batchStream) next() ([]*riggerv1.TaskEvent, error) {
	batch, err := s.Recv()
	if err != nil {
		return nil, err
	}
	return batch.GetEvents(), nil
}

// open starts one subscription on the stream the watch reads.
func (w *watcher) open(ctx context.Context, req *riggerv1.SubscribeToTaskEventsRequest) (eventStream, error) {
	if w.opts.Plain {
		stream, err := w.client.SubscribeToTaskEvents(ctx, req, w.opts.CallOptions...)
		if err != nil {
			return nil, err
		}
		return plainStream{stream}, nil
	}
	// The batched request has the same fields under the same numbers.
	wire, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	batched := &riggerv1.SubscribeToTaskEventBatchesRequest{}
	if err := proto.Unmarshal(wire, batched); err != nil {
		return nil, err
	}
	stream, err := w.client.SubscribeToTaskEventBatches(ctx, batched, w.opts.CallOptions...)
	if err != nil {
		return nil, err
	}
	return batchStream{stream}, nil
}

// registrationWait bounds the wait for a subscription's response headers.
// The server sends them once the subscription is registered, so that a
// live-only subscriber knows from when on it misses nothing; servers from
// before that change send them only with the first event, and for those the
// subscription is assumed open after this wait.
var registrationWait = time.Second // a variable for tests

// resumeAfterHead makes the next subscription replay everything after the
// head sequence in md, if the server sent one.
func (w *watcher) resumeAfterHead(md metadata.MD) {
	if head, ok := headSequence(md); ok {
		w.reportHead(md)
		w.seen, w.last = true, head
	}
}

// reportHead tells OnHead, once, the head sequence in md that a live-only
// watch resumes after until its first event.
func (w *watcher) reportHead(md metadata.MD) {
	if w.seen || w.headReported || w.opts.OnHead == nil {
		return
	}
	if head, ok := headSequence(md); ok {
		w.headReported = true
		w.opts.OnHead(head)
	}
}

// headSequence reads the rigger-head-sequence header; ok is false when it
// is absent or no uint64.
func headSequence(md metadata.MD) (head uint64, ok bool) {
	values := md.Get(headSequenceKey)
	if len(values) == 0 {
		return 0, false
	}
	head, err := strconv.ParseUint(values[0], 10, 64)
	return head, err == nil
}

// streamHeaders are a stream's response headers, read in the background
// because Header blocks until they arrive or the stream ends.
type streamHeaders struct {
	ch   chan metadata.MD
	md   metadata.MD
	done bool // md holds what Header returned
}

func readHeaders(stream grpc.ClientStream) *streamHeaders {
	h := &streamHeaders{ch: make(chan metadata.MD, 1)}
	go func() {
		// Header returns nil when the stream ends without headers, and
		// unblocks when the stream is cancelled, so this never leaks.
		md, _ := stream.Header()
		h.ch <- md
	}()
	return h
}

// await waits up to d for the server to confirm the subscription with its
// response headers, and reports false when the stream ended without any (it
// was refused; Recv returns why).
func (h *streamHeaders) await(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case h.md = <-h.ch:
		h.done = true
		return h.md != nil
	case <-timer.C:
		return true
	}
}

// get returns the headers, nil if there were none. It waits for Header, so
// call it only once the stream has ended or been cancelled.
func (h *streamHeaders) get() metadata.MD {
	if !h.done {
		h.md, h.done = <-h.ch, true
	}
	return h.md
}

// sleep waits d or until ctx is done, and reports whether the full wait
// elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Backoff is exponential backoff with jitter. Zero or invalid fields take
// their DefaultBackoff values.
type Backoff struct {
	// Initial is the delay before the first retry.
	Initial time.Duration
	// Max caps the delay.
	Max time.Duration
	// Multiplier grows the delay after each failed retry; at least 1.
	Multiplier float64
	// Jitter is the fraction, in (0, 1], by which a delay is randomly
	// shortened, so that many clients cut off together do not reconnect in
	// lockstep.
	Jitter float64
}

// DefaultBackoff starts at 100ms and doubles up to 5s, each delay shortened
// by up to 20%: the schedule of every Rigger client (clients/README.md).
var DefaultBackoff = Backoff{
	Initial:    100 * time.Millisecond,
	Max:        5 * time.Second,
	Multiplier: 2,
	Jitter:     0.2,
}

// Delay is the wait before retry number retries (counting from 0).
func (b Backoff) Delay(retries int) time.Duration {
	return b.delay(retries, rand.Float64())
}

// delay takes the random draw in [0, 1) as a parameter to stay testable.
func (b Backoff) delay(retries int, random float64) time.Duration {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	b.Max = max(b.Max, b.Initial)
	if b.Multiplier < 1 {
		b.Multiplier = DefaultBackoff.Multiplier
	}
	if b.Jitter <= 0 || b.Jitter > 1 {
		b.Jitter = DefaultBackoff.Jitter
	}
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(max(retries, 0)))
	d = min(d, float64(b.Max))
	// Jitter only shortens, so Max stays a true cap.
	return time.Duration(d * (1 - b.Jitter*random))
}
