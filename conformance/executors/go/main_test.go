package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	hp "github.com/rigger-dev/rigger/conformance/executors/go/gen/rigger/conformance/v1"
	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
)

func frames(t *testing.T, instructions ...*hp.Instruction) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, in := range instructions {
		if _, err := protodelim.MarshalTo(&b, in); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func observations(t *testing.T, out []byte) []*hp.Observation {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(out))
	var got []*hp.Observation
	for {
		o := new(hp.Observation)
		err := protodelim.UnmarshalFrom(r, o)
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatalf("observation %d: %v", len(got), err)
		}
		got = append(got, o)
	}
}

// TestInstructionErrors runs a whole session without a server: every
// instruction that cannot be carried out is answered with an ExecutorError,
// and Shutdown is answered last.
func TestInstructionErrors(t *testing.T) {
	in := frames(t,
		&hp.Instruction{Id: 1, Action: &hp.Instruction_UnaryCall{UnaryCall: &hp.UnaryCall{Method: "AddTask"}}},
		&hp.Instruction{Id: 2, Action: &hp.Instruction_Connect{Connect: &hp.Connect{Address: "127.0.0.1:9"}}},
		&hp.Instruction{Id: 3, Action: &hp.Instruction_UnaryCall{UnaryCall: &hp.UnaryCall{Method: "Nope"}}},
		&hp.Instruction{Id: 4, Action: &hp.Instruction_UnaryCall{UnaryCall: &hp.UnaryCall{Method: "GetTask", Request: []byte{0xff}}}},
		&hp.Instruction{Id: 5, Action: &hp.Instruction_UnaryCall{UnaryCall: &hp.UnaryCall{Method: "SubscribeToTaskEvents"}}},
		&hp.Instruction{Id: 6, Action: &hp.Instruction_OpenStream{OpenStream: &hp.OpenStream{Stream: "s", Method: "AddTask"}}},
		&hp.Instruction{Id: 7, Action: &hp.Instruction_StreamSend{StreamSend: &hp.StreamSend{Stream: "ghost"}}},
		&hp.Instruction{Id: 8, Action: &hp.Instruction_StreamCancel{StreamCancel: &hp.StreamCancel{Stream: "ghost"}}},
		&hp.Instruction{Id: 9},
		&hp.Instruction{Id: 10, Action: &hp.Instruction_Connect{Connect: &hp.Connect{Address: "x:1", CertFile: "/missing.pem"}}},
		&hp.Instruction{Id: 11, Action: &hp.Instruction_Shutdown{Shutdown: &hp.Shutdown{}}},
		&hp.Instruction{Id: 12, Action: &hp.Instruction_Connect{Connect: &hp.Connect{Address: "never read"}}},
	)
	var out, stderr bytes.Buffer
	if code := serve(bytes.NewReader(in), &out, &stderr); code != 0 {
		t.Fatalf("exit code %d; stderr: %s", code, stderr.String())
	}
	want := map[uint64]string{
		1:  "send Connect first",
		2:  "",
		3:  `has no method "Nope"`,
		4:  "does not parse as rigger.v1.GetTaskRequest",
		5:  "is a streaming method",
		6:  "is not a server-streaming method",
		7:  `no stream "ghost"`,
		8:  `no stream "ghost"`,
		9:  "no action",
		10: "connect:",
		11: "",
	}
	got := observations(t, out.Bytes())
	if len(got) != len(want) {
		t.Fatalf("got %d observations, want %d: %v", len(got), len(want), got)
	}
	if last := got[len(got)-1]; last.GetInstructionId() != 11 || last.GetDone() == nil {
		t.Errorf("last observation = %v, want Done for the Shutdown", last)
	}
	for _, o := range got {
		id := o.GetInstructionId()
		if want[id] == "" {
			if o.GetDone() == nil {
				t.Errorf("instruction %d: got %v, want Done", id, o)
			}
		} else if msg := o.GetExecutorError().GetMessage(); !strings.Contains(msg, want[id]) {
			t.Errorf("instruction %d: got %v, want an ExecutorError containing %q", id, o, want[id])
		}
	}
}

func TestEndOfInput(t *testing.T) {
	var out, stderr bytes.Buffer
	if code := serve(bytes.NewReader(nil), &out, &stderr); code != 0 || out.Len() != 0 {
		t.Errorf("empty input: exit %d, %d bytes out; want 0 and nothing", code, out.Len())
	}
	truncated := frames(t, &hp.Instruction{Id: 1, Action: &hp.Instruction_Shutdown{Shutdown: &hp.Shutdown{}}})
	truncated = truncated[:len(truncated)-1]
	if code := serve(bytes.NewReader(truncated), &out, &stderr); code != 1 || !strings.Contains(stderr.String(), "reading an instruction") {
		t.Errorf("truncated frame: exit %d, stderr %q; want 1 and an explanation", code, stderr.String())
	}
}

// fakeServer answers just enough of RiggerService to exercise the executor.
type fakeServer struct {
	riggerv1.UnimplementedRiggerServiceServer
}

func (fakeServer) AddTask(ctx context.Context, req *riggerv1.AddTaskRequest) (*riggerv1.AddTaskResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-echo", strings.Join(md.Get("x-test"), ","), "x-raw-bin", "\x00\xff"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("rigger-trailer", "t"))
	if req.GetTitle() == "" {
		return nil, status.Error(codes.InvalidArgument, "title: must not be empty")
	}
	return &riggerv1.AddTaskResponse{Task: &riggerv1.Task{Id: "1", Title: req.GetTitle(), Version: 1}}, nil
}

func (fakeServer) SubscribeToTaskEvents(req *riggerv1.SubscribeToTaskEventsRequest, s grpc.ServerStreamingServer[riggerv1.TaskEvent]) error {
	if req.GetAssigneeFilter() == "refuse" {
		return status.Error(codes.InvalidArgument, "refused") // trailers-only
	}
	_ = s.SendHeader(metadata.Pairs("rigger-head-sequence", "4"))
	_ = s.Send(&riggerv1.TaskEvent{Sequence: 5, Metadata: map[string]string{"b": "2", "a": "1"}})
	<-s.Context().Done()
	return nil
}

func (fakeServer) TaskEventStream(s grpc.BidiStreamingServer[riggerv1.TaskEventStreamRequest, riggerv1.TaskEvent]) error {
	for n := uint64(1); ; n++ {
		if _, err := s.Recv(); err != nil {
			s.SetTrailer(metadata.Pairs("rigger-last-sequence", "2"))
			return nil // the client half-closed: end with OK
		}
		_ = s.Send(&riggerv1.TaskEvent{Sequence: n})
	}
}

// session drives serve over pipes, one instruction at a time.
type session struct {
	t   *testing.T
	in  *io.PipeWriter
	out *bufio.Reader
	ret chan int
}

func startSession(t *testing.T) *session {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &session{t: t, in: inW, out: bufio.NewReader(outR), ret: make(chan int, 1)}
	go func() {
		s.ret <- serve(inR, outW, io.Discard)
		outW.Close()
	}()
	return s
}

func (s *session) send(in *hp.Instruction) {
	s.t.Helper()
	if _, err := s.in.Write(frames(s.t, in)); err != nil {
		s.t.Fatal(err)
	}
}

func (s *session) next() *hp.Observation {
	s.t.Helper()
	got := make(chan *hp.Observation, 1)
	go func() {
		o := new(hp.Observation)
		if err := protodelim.UnmarshalFrom(s.out, o); err != nil {
			o = nil
		}
		got <- o
	}()
	select {
	case o := <-got:
		if o == nil {
			s.t.Fatal("the executor's output ended")
		}
		return o
	case <-time.After(5 * time.Second):
		s.t.Fatal("no observation within 5 s")
		return nil
	}
}

// expect reads the next observation and checks it is for instruction id.
func (s *session) expect(id uint64) *hp.Observation {
	s.t.Helper()
	o := s.next()
	if o.GetInstructionId() != id || o.GetExecutorError() != nil {
		s.t.Fatalf("got %v, want an observation for instruction %d", o, id)
	}
	return o
}

func headerMap(hs []*hp.Header) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.GetKey()] = h.GetValue()
	}
	return m
}

func TestAgainstServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	riggerv1.RegisterRiggerServiceServer(srv, fakeServer{})
	go srv.Serve(lis)
	defer srv.Stop()

	s := startSession(t)
	s.send(&hp.Instruction{Id: 1, Action: &hp.Instruction_Connect{Connect: &hp.Connect{Address: lis.Addr().String()}}})
	s.expect(1)

	// A unary call: response re-encoded, metadata sent, headers and trailers
	// reported, -bin values base64 as on the wire.
	req, _ := proto.Marshal(&riggerv1.AddTaskRequest{Title: "t"})
	s.send(&hp.Instruction{Id: 2, Action: &hp.Instruction_UnaryCall{UnaryCall: &hp.UnaryCall{
		Method: "AddTask", Request: req, Metadata: map[string]string{"x-test": "v"}, TimeoutMs: 5000,
	}}})
	r := s.expect(2).GetUnaryResult()
	var resp riggerv1.AddTaskResponse
	if err := proto.Unmarshal(r.GetResponse(), &resp); err != nil || resp.GetTask().GetTitle() != "t" || r.GetStatus().GetCode() != 0 {
		t.Errorf("AddTask: %v (%v)", r, err)
	}
	if h := headerMap(r.GetHeaders()); h["x-echo"] != "v" || h["x-raw-bin"] != "AP8" {
		t.Errorf("AddTask headers = %v", h)
	}
	if tr := headerMap(r.GetTrailers()); tr["rigger-trailer"] != "t" {
		t.Errorf("AddTask trailers = %v", tr)
	}

	// A failed unary call: the status, no response.
	s.send(&hp.Instruction{Id: 3, Action: &hp.Instruction_UnaryCall{UnaryCall: &hp.UnaryCall{Method: "AddTask"}}})
	r = s.expect(3).GetUnaryResult()
	if r.GetStatus().GetCode() != uint32(codes.InvalidArgument) || len(r.GetResponse()) != 0 {
		t.Errorf("failed AddTask: %v", r)
	}

	// A server stream: Done, headers, a message, then CANCELLED on cancel.
	s.send(&hp.Instruction{Id: 4, Action: &hp.Instruction_OpenStream{OpenStream: &hp.OpenStream{Stream: "sub", Method: "SubscribeToTaskEvents"}}})
	if o := s.expect(4); o.GetDone() == nil {
		t.Fatalf("open: got %v, want Done first", o)
	}
	if h := s.expect(4).GetStreamHeaders(); h.GetStream() != "sub" || headerMap(h.GetHeaders())["rigger-head-sequence"] != "4" {
		t.Errorf("headers: %v", h)
	}
	m := s.expect(4).GetStreamMessage()
	want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&riggerv1.TaskEvent{Sequence: 5, Metadata: map[string]string{"a": "1", "b": "2"}})
	if !bytes.Equal(m.GetMessage(), want) || m.GetReceivedMonotonicNs() <= 0 {
		t.Errorf("message: %v", m)
	}
	s.send(&hp.Instruction{Id: 5, Action: &hp.Instruction_StreamCancel{StreamCancel: &hp.StreamCancel{Stream: "sub"}}})
	s.expect(5)
	if end := s.expect(4).GetStreamEnd(); end.GetStatus().GetCode() != uint32(codes.Canceled) {
		t.Errorf("end after cancel: %v", end)
	}

	// A refused stream: Done, no headers, the status.
	refuse, _ := proto.Marshal(&riggerv1.SubscribeToTaskEventsRequest{AssigneeFilter: proto.String("refuse")})
	s.send(&hp.Instruction{Id: 6, Action: &hp.Instruction_OpenStream{OpenStream: &hp.OpenStream{Stream: "sub", Method: "SubscribeToTaskEvents", Request: refuse}}})
	s.expect(6)
	if end := s.expect(6).GetStreamEnd(); end.GetStatus().GetCode() != uint32(codes.InvalidArgument) {
		t.Errorf("refused stream: %v, want a StreamEnd with INVALID_ARGUMENT and no headers", end)
	}

	// A bidi stream: sends in order, a half-close ends it with OK.
	s.send(&hp.Instruction{Id: 7, Action: &hp.Instruction_OpenStream{OpenStream: &hp.OpenStream{Stream: "bidi", Method: "TaskEventStream"}}})
	s.expect(7)
	msg, _ := proto.Marshal(&riggerv1.TaskEventStreamRequest{Request: &riggerv1.TaskEventStreamRequest_Subscribe{Subscribe: &riggerv1.SubscribeToTaskEventsRequest{}}})
	s.send(&hp.Instruction{Id: 8, Action: &hp.Instruction_StreamSend{StreamSend: &hp.StreamSend{Stream: "bidi", Message: msg}}})
	seen := map[string]bool{}
	for len(seen) < 3 {
		o := s.next()
		switch {
		case o.GetInstructionId() == 8 && o.GetDone() != nil:
			seen["done"] = true
		case o.GetInstructionId() == 7 && o.GetStreamHeaders() != nil:
			seen["headers"] = true
		case o.GetInstructionId() == 7 && o.GetStreamMessage() != nil:
			seen["message"] = true
		default:
			t.Fatalf("unexpected %v", o)
		}
	}
	s.send(&hp.Instruction{Id: 9, Action: &hp.Instruction_StreamCloseSend{StreamCloseSend: &hp.StreamCloseSend{Stream: "bidi"}}})
	var end *hp.StreamEnd
	for range 2 {
		if o := s.next(); o.GetInstructionId() == 7 {
			end = o.GetStreamEnd()
		} else if o.GetInstructionId() != 9 || o.GetDone() == nil {
			t.Fatalf("unexpected %v", o)
		}
	}
	if end.GetStatus().GetCode() != 0 || headerMap(end.GetTrailers())["rigger-last-sequence"] != "2" {
		t.Errorf("bidi end: %v", end)
	}

	// Shutdown ends an open stream, then answers Done and exits 0.
	s.send(&hp.Instruction{Id: 10, Action: &hp.Instruction_OpenStream{OpenStream: &hp.OpenStream{Stream: "last", Method: "SubscribeToTaskEvents"}}})
	s.expect(10) // Done
	s.expect(10) // headers
	s.expect(10) // the message
	s.send(&hp.Instruction{Id: 11, Action: &hp.Instruction_Shutdown{Shutdown: &hp.Shutdown{}}})
	if end := s.expect(10).GetStreamEnd(); end.GetStatus().GetCode() != uint32(codes.Canceled) {
		t.Errorf("end at shutdown: %v", end)
	}
	if o := s.expect(11); o.GetDone() == nil {
		t.Errorf("shutdown: %v", o)
	}
	if code := <-s.ret; code != 0 {
		t.Errorf("exit code %d", code)
	}
}
