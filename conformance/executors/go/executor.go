package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	hp "github.com/rigger-dev/rigger/conformance/executors/go/gen/rigger/conformance/v1"
	"github.com/rigger-dev/rigger/clients/go/rigger"
)

// shutdownGrace bounds how long Shutdown waits for cancelled calls and
// streams to report; a wedged call must not keep the process alive.
const shutdownGrace = 5 * time.Second

// executor carries out instructions. dispatch, and with it the streams map,
// runs only on the goroutine reading stdin, so whatever later instructions
// depend on (the current channel, a stream's registration, the order of
// sends) is settled in arrival order; the waiting happens on goroutines.
type executor struct {
	out *observer
	// ctx is the parent of every call; shutdown cancels it.
	ctx  context.Context
	stop context.CancelFunc
	// calls counts goroutines that still owe observations. Add is only
	// called by dispatch, so it never races with the Wait in shutdown.
	calls sync.WaitGroup

	streams map[string]*stream

	mu       sync.Mutex // guards current, channels and channel.users
	current  *channel
	channels map[*channel]bool // every channel not yet closed
}

// channel is one client connection and the calls still using it. A channel
// replaced by a newer Connect is closed once its last call is over: the
// runner connects afresh for every case, so old ones would pile up.
type channel struct {
	conn  *grpc.ClientConn
	users int
}

// stream is one streaming call. Sends and half-closes are chained behind
// the opening and behind each other, because grpc-go allows only one
// goroutine at a time on a stream's sending side and the server must see
// messages in the order the runner gave them.
type stream struct {
	name   string
	id     uint64 // the OpenStream instruction; its observations carry it
	bidi   bool
	cancel context.CancelFunc
	// cs is set before the opening step of the chain completes; nil when
	// the stream could not be opened.
	cs    grpc.ClientStream
	tail  chan struct{} // closed when the last chained step is over
	ended chan struct{} // closed once StreamEnd has been reported
}

func newExecutor(out *observer) *executor {
	ctx, stop := context.WithCancel(context.Background())
	return &executor{
		out:      out,
		ctx:      ctx,
		stop:     stop,
		streams:  map[string]*stream{},
		channels: map[*channel]bool{},
	}
}

// dispatch starts one instruction. A handler that returns an error has
// reported nothing; one that returns nil reports (or will report) itself.
func (e *executor) dispatch(in *hp.Instruction) {
	id := in.GetId()
	var err error
	switch a := in.GetAction().(type) {
	case *hp.Instruction_Connect:
		err = e.connect(id, a.Connect)
	case *hp.Instruction_UnaryCall:
		err = e.unaryCall(id, a.UnaryCall)
	case *hp.Instruction_OpenStream:
		err = e.openStream(id, a.OpenStream)
	case *hp.Instruction_StreamSend:
		err = e.streamSend(id, a.StreamSend)
	case *hp.Instruction_StreamCloseSend:
		err = e.streamCloseSend(id, a.StreamCloseSend)
	case *hp.Instruction_StreamCancel:
		err = e.streamCancel(id, a.StreamCancel)
	case nil:
		err = errors.New("the instruction has no action this executor knows (a newer protocol?)")
	default:
		err = fmt.Errorf("unhandled instruction action %T", a)
	}
	if err != nil {
		e.out.fail(id, err)
	}
}

// --- channels -----------------------------------------------------------------

func (e *executor) connect(id uint64, c *hp.Connect) error {
	conn, err := rigger.Dial(c.GetAddress(), rigger.Options{
		CAFile:   c.GetCaFile(),
		CertFile: c.GetCertFile(),
		KeyFile:  c.GetKeyFile(),
		Token:    c.GetToken(),
	})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	ch := &channel{conn: conn}
	e.mu.Lock()
	old := e.current
	e.current = ch
	e.channels[ch] = true
	idle := old != nil && old.users == 0
	if idle {
		delete(e.channels, old)
	}
	e.mu.Unlock()
	if idle {
		old.conn.Close()
	}
	// Each case starts with a Connect; streams of earlier cases that have
	// ended are of no further use.
	for name, s := range e.streams {
		if s.isEnded() {
			delete(e.streams, name)
		}
	}
	e.out.done(id)
	return nil
}

// acquire returns the current channel, counted as in use until release.
func (e *executor) acquire() (*channel, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.current == nil {
		return nil, errors.New("no channel: send Connect first")
	}
	e.current.users++
	return e.current, nil
}

func (e *executor) release(ch *channel) {
	e.mu.Lock()
	ch.users--
	idle := ch.users == 0 && ch != e.current && e.channels[ch]
	if idle {
		delete(e.channels, ch)
	}
	e.mu.Unlock()
	if idle {
		ch.conn.Close()
	}
}

// callContext derives a call's context: cancelled by shutdown, with the
// instruction's deadline and extra metadata.
func (e *executor) callContext(md map[string]string, timeoutMS uint32) (context.Context, context.CancelFunc) {
	var ctx context.Context
	var cancel context.CancelFunc
	if timeoutMS > 0 {
		ctx, cancel = context.WithTimeout(e.ctx, time.Duration(timeoutMS)*time.Millisecond)
	} else {
		ctx, cancel = context.WithCancel(e.ctx)
	}
	if len(md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, metadata.New(md))
	}
	return ctx, cancel
}

// --- unary calls --------------------------------------------------------------

func (e *executor) unaryCall(id uint64, c *hp.UnaryCall) error {
	m, err := lookup(c.GetMethod())
	if err != nil {
		return err
	}
	if m.IsStreamingClient() || m.IsStreamingServer() {
		return fmt.Errorf("%s is a streaming method; use OpenStream", m.Name())
	}
	req, err := parse(m.Input(), c.GetRequest(), "the request")
	if err != nil {
		return err
	}
	ch, err := e.acquire()
	if err != nil {
		return err
	}
	ctx, cancel := e.callContext(c.GetMetadata(), c.GetTimeoutMs())
	e.calls.Add(1)
	go func() {
		defer e.calls.Done()
		defer e.release(ch)
		defer cancel()
		resp := newMessage(m.Output())
		var header, trailer metadata.MD
		err := ch.conn.Invoke(ctx, fullMethod(m), req, resp, grpc.Header(&header), grpc.Trailer(&trailer))
		result := &hp.UnaryResult{
			Status:   statusOf(err),
			Headers:  headersOf(header),
			Trailers: headersOf(trailer),
		}
		if err == nil {
			if result.Response, err = reencode(resp); err != nil {
				e.out.fail(id, fmt.Errorf("re-encoding the %s response: %w", m.Name(), err))
				return
			}
		}
		e.out.unaryResult(id, result)
	}()
	return nil
}

// --- streams ------------------------------------------------------------------

func (s *stream) isEnded() bool {
	select {
	case <-s.ended:
		return true
	default:
		return false
	}
}

func (e *executor) openStream(id uint64, c *hp.OpenStream) error {
	m, err := lookup(c.GetMethod())
	if err != nil {
		return err
	}
	if !m.IsStreamingServer() {
		return fmt.Errorf("%s is not a server-streaming method", m.Name())
	}
	var req proto.Message
	if m.IsStreamingClient() {
		if len(c.GetRequest()) > 0 {
			return fmt.Errorf("%s takes no request in OpenStream; send messages with StreamSend", m.Name())
		}
	} else if req, err = parse(m.Input(), c.GetRequest(), "the request"); err != nil {
		return err
	}
	if old, ok := e.streams[c.GetStream()]; ok && !old.isEnded() {
		return fmt.Errorf("stream %q is already open", c.GetStream())
	}
	ch, err := e.acquire()
	if err != nil {
		return err
	}
	ctx, cancel := e.callContext(c.GetMetadata(), c.GetTimeoutMs())
	opened := make(chan struct{})
	s := &stream{
		name:   c.GetStream(),
		id:     id,
		bidi:   m.IsStreamingClient(),
		cancel: cancel,
		tail:   opened,
		ended:  make(chan struct{}),
	}
	e.streams[s.name] = s
	e.calls.Add(1)
	go func() {
		defer e.calls.Done()
		defer e.release(ch)
		defer cancel()
		// NewStream waits for a usable connection, so it runs here rather
		// than in dispatch; sends queued meanwhile wait for opened.
		cs, err := e.open(ctx, ch, m, req)
		s.cs = cs
		close(opened)
		e.out.done(id)
		if err != nil {
			e.end(s, &hp.StreamEnd{Stream: s.name, Status: statusOf(err)})
			return
		}
		e.read(s, m)
	}()
	return nil
}

// open starts the call and, for a server stream, sends its one request.
func (e *executor) open(ctx context.Context, ch *channel, m protoreflect.MethodDescriptor, req proto.Message) (grpc.ClientStream, error) {
	desc := &grpc.StreamDesc{
		StreamName:    string(m.Name()),
		ServerStreams: m.IsStreamingServer(),
		ClientStreams: m.IsStreamingClient(),
	}
	cs, err := ch.conn.NewStream(ctx, desc, fullMethod(m))
	if err != nil {
		return nil, err
	}
	if req != nil {
		// A failed send has ended the stream; RecvMsg reports its status
		// (for io.EOF, the server's).
		if cs.SendMsg(req) == nil {
			_ = cs.CloseSend() // always nil
		}
	}
	return cs, nil
}

// read reports a stream's headers, messages and end. It does not reconnect
// or resume: the runner judges the raw stream.
func (e *executor) read(s *stream, m protoreflect.MethodDescriptor) {
	// Header returns nil, without an error, when the stream ended before
	// any headers (a trailers-only response): then there are none to report.
	// Headers that are present but empty still count.
	if md, _ := s.cs.Header(); md != nil {
		e.out.streamHeaders(s.id, &hp.StreamHeaders{Stream: s.name, Headers: headersOf(md)})
	}
	for {
		msg := newMessage(m.Output())
		err := s.cs.RecvMsg(msg)
		received := monotonicNow()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil // the server ended the stream with OK
			}
			e.end(s, &hp.StreamEnd{
				Stream:   s.name,
				Status:   statusOf(err),
				Trailers: headersOf(s.cs.Trailer()),
			})
			return
		}
		b, err := reencode(msg)
		if err != nil {
			e.out.fail(s.id, fmt.Errorf("stream %q: re-encoding a message: %w", s.name, err))
			continue
		}
		e.out.streamMessage(s.id, &hp.StreamMessage{Stream: s.name, Message: b, ReceivedMonotonicNs: received})
	}
}

// end reports how a stream ended. The stream counts as ended first: once
// the runner has seen StreamEnd it may open a new stream under the name.
func (e *executor) end(s *stream, end *hp.StreamEnd) {
	close(s.ended)
	e.out.streamEnd(s.id, end)
}

// bidi finds an open bidi stream by name.
func (e *executor) bidi(name string) (*stream, error) {
	s, ok := e.streams[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("no stream %q", name)
	case !s.bidi:
		return nil, fmt.Errorf("stream %q is not a bidi stream", name)
	}
	return s, nil
}

// chain runs step on the stream's sending side after everything queued
// before it, and reports Done or an ExecutorError for instruction id.
func (e *executor) chain(id uint64, s *stream, step func(grpc.ClientStream) error) {
	prev, next := s.tail, make(chan struct{})
	s.tail = next
	e.calls.Add(1)
	go func() {
		defer e.calls.Done()
		defer close(next)
		<-prev
		if s.cs == nil {
			e.out.fail(id, fmt.Errorf("stream %q did not open (its StreamEnd says why)", s.name))
			return
		}
		if err := step(s.cs); err != nil {
			e.out.fail(id, err)
			return
		}
		e.out.done(id)
	}()
}

func (e *executor) streamSend(id uint64, c *hp.StreamSend) error {
	s, err := e.bidi(c.GetStream())
	if err != nil {
		return err
	}
	m, _ := lookup("TaskEventStream")
	msg, err := parse(m.Input(), c.GetMessage(), "the message")
	if err != nil {
		return err
	}
	e.chain(id, s, func(cs grpc.ClientStream) error {
		err := cs.SendMsg(msg)
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("stream %q has ended; the message was not sent (its StreamEnd says why)", s.name)
		}
		if err != nil {
			return fmt.Errorf("sending on stream %q: %w", s.name, err)
		}
		return nil
	})
	return nil
}

func (e *executor) streamCloseSend(id uint64, c *hp.StreamCloseSend) error {
	s, err := e.bidi(c.GetStream())
	if err != nil {
		return err
	}
	e.chain(id, s, func(cs grpc.ClientStream) error { return cs.CloseSend() })
	return nil
}

// streamCancel answers Done, then cancels the stream's context; its reader
// then reports StreamEnd with CANCELLED. The protocol promises Done before
// the StreamEnd the cancel causes, so Done is written before the reader can
// see the cancellation. Cancelling a stream that has already ended is a
// no-op, since the runner cannot tell whether its StreamEnd was in flight.
func (e *executor) streamCancel(id uint64, c *hp.StreamCancel) error {
	s, ok := e.streams[c.GetStream()]
	if !ok {
		return fmt.Errorf("no stream %q", c.GetStream())
	}
	e.out.done(id)
	s.cancel()
	return nil
}

// --- shutdown -----------------------------------------------------------------

// shutdown cancels every call and stream, waits for them to report, and
// closes every channel.
func (e *executor) shutdown() {
	e.stop()
	reported := make(chan struct{})
	go func() {
		e.calls.Wait()
		close(reported)
	}()
	select {
	case <-reported:
	case <-time.After(shutdownGrace):
	}
	e.mu.Lock()
	channels := e.channels
	e.channels, e.current = map[*channel]bool{}, nil
	e.mu.Unlock()
	for ch := range channels {
		ch.conn.Close()
	}
}
