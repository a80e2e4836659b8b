package rigger

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
)

// serverStep is what one SubscribeToTaskEvents call of a plainOnlyServer
// does: send the events after the request's after_sequence up to upto, then
// end with ending (nil: stay open until cancelled).
type serverStep struct {
	upto   uint64
	ending error
	head   string // the rigger-head-sequence header, if not empty
}

// plainOnlyServer is a real gRPC server on a loopback port that offers
// SubscribeToTaskEvents only, as servers from before
// SubscribeToTaskEventBatches do: any other method is answered
// UNIMPLEMENTED, as gRPC answers an unknown method.
type plainOnlyServer struct {
	riggerv1.UnimplementedRiggerServiceServer
	steps []serverStep

	mu      sync.Mutex
	methods []string // every call, by method name
	afters  []string // each SubscribeToTaskEvents call's after_sequence
}

func (s *plainOnlyServer) record(method string, after *uint64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.methods = append(s.methods, method)
	if method != "SubscribeToTaskEvents" {
		return -1
	}
	s.afters = append(s.afters, fmtAfter(after))
	return len(s.afters) - 1
}

func (s *plainOnlyServer) calls() (methods, afters string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.methods), fmt.Sprint(s.afters)
}

func (s *plainOnlyServer) SubscribeToTaskEvents(req *riggerv1.SubscribeToTaskEventsRequest, stream grpc.ServerStreamingServer[riggerv1.TaskEvent]) error {
	n := s.record("SubscribeToTaskEvents", req.AfterSequence)
	if n >= len(s.steps) {
		return status.Errorf(codes.FailedPrecondition, "unexpected subscription #%d", n+1)
	}
	step := s.steps[n]
	if step.head != "" {
		if err := stream.SendHeader(metadata.Pairs(headSequenceKey, step.head)); err != nil {
			return err
		}
	}
	for seq := req.GetAfterSequence() + 1; seq <= step.upto; seq++ {
		if err := stream.Send(&riggerv1.TaskEvent{Sequence: seq}); err != nil {
			return err
		}
	}
	if step.ending == nil {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	return step.ending
}

// serve starts the server, offering SubscribeToTaskEvents when plain is
// set, and returns a client connected to it.
func (s *plainOnlyServer) serve(t *testing.T, plain bool) riggerv1.RiggerServiceClient {
	t.Helper()
	desc := riggerv1.RiggerService_ServiceDesc
	desc.Methods = nil
	desc.Streams = nil
	if plain {
		for _, stream := range riggerv1.RiggerService_ServiceDesc.Streams {
			if stream.StreamName == "SubscribeToTaskEvents" {
				desc.Streams = append(desc.Streams, stream)
			}
		}
	}
	server := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		full, _ := grpc.MethodFromServerStream(stream)
		method := full[strings.LastIndex(full, "/")+1:]
		s.record(method, nil)
		return status.Errorf(codes.Unimplemented, "unknown method %s for service rigger.v1.RiggerService", method)
	}))
	server.RegisterService(&desc, s)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	conn, err := Dial(listener.Addr().String(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return riggerv1.NewRiggerServiceClient(conn)
}

// watchUntil collects events until it has count of them, the watch ends,
// or a generous deadline passes.
func watchUntil(t *testing.T, client riggerv1.RiggerServiceClient, req *riggerv1.SubscribeToTaskEventsRequest, count int, opts WatchOptions) ([]uint64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testContext(t), 20*time.Second)
	defer cancel()
	opts.Backoff = fastBackoff
	var seqs []uint64
	for event, err := range Watch(ctx, client, req, opts) {
		if err != nil {
			return seqs, err
		}
		if seqs = append(seqs, event.GetSequence()); len(seqs) == count {
			break
		}
	}
	return seqs, nil
}

func TestWatchReadsThePlainStreamFromAServerWithoutBatches(t *testing.T) {
	server := &plainOnlyServer{steps: []serverStep{
		{upto: 3, ending: status.Error(codes.Unavailable, "restarting")},
		{upto: 5},
	}}
	client := server.serve(t, true)
	var fallbacks []error
	seqs, err := watchUntil(t, client, &riggerv1.SubscribeToTaskEventsRequest{AfterSequence: ptr(0)}, 5, WatchOptions{
		OnFallback: func(err error) { fallbacks = append(fallbacks, err) },
	})
	if err != nil || fmt.Sprint(seqs) != "[1 2 3 4 5]" {
		t.Fatalf("got %v, %v; want [1 2 3 4 5] and no error", seqs, err)
	}
	// One batched attempt, then the plain stream for the rest of the watch,
	// resumed after the last event as always.
	methods, afters := server.calls()
	if methods != "[SubscribeToTaskEventBatches SubscribeToTaskEvents SubscribeToTaskEvents]" || afters != "[0 3]" {
		t.Errorf("calls %s with after_sequence %s", methods, afters)
	}
	if len(fallbacks) != 1 || status.Code(fallbacks[0]) != codes.Unimplemented {
		t.Errorf("OnFallback saw %v, want one UNIMPLEMENTED", fallbacks)
	}
}

func TestWatchWithPlainNeverAsksForBatches(t *testing.T) {
	server := &plainOnlyServer{steps: []serverStep{{upto: 2}}}
	client := server.serve(t, true)
	seqs, err := watchUntil(t, client, &riggerv1.SubscribeToTaskEventsRequest{AfterSequence: ptr(0)}, 2, WatchOptions{Plain: true})
	if methods, _ := server.calls(); err != nil || fmt.Sprint(seqs) != "[1 2]" || methods != "[SubscribeToTaskEvents]" {
		t.Errorf("got %v, %v after calls %s; want [1 2] from SubscribeToTaskEvents alone", seqs, err, methods)
	}
}

func TestWatchEndsOnUnimplementedFromThePlainStreamToo(t *testing.T) {
	server := &plainOnlyServer{}
	client := server.serve(t, false)
	_, err := watchUntil(t, client, &riggerv1.SubscribeToTaskEventsRequest{AfterSequence: ptr(0)}, 1, WatchOptions{})
	methods, _ := server.calls()
	if status.Code(err) != codes.Unimplemented || methods != "[SubscribeToTaskEventBatches SubscribeToTaskEvents]" {
		t.Errorf("got %v after calls %s; want UNIMPLEMENTED after one call of each", err, methods)
	}
}

func TestWatchReportsTheHeadALiveWatchResumesAfter(t *testing.T) {
	server := &plainOnlyServer{steps: []serverStep{
		{head: "7", ending: status.Error(codes.Unavailable, "restarting")},
		{upto: 9},
	}}
	client := server.serve(t, true)
	var heads []uint64
	seqs, err := watchUntil(t, client, &riggerv1.SubscribeToTaskEventsRequest{}, 2, WatchOptions{
		Plain:  true,
		OnHead: func(head uint64) { heads = append(heads, head) },
	})
	_, afters := server.calls()
	if err != nil || fmt.Sprint(seqs) != "[8 9]" || fmt.Sprint(heads) != "[7]" || afters != "[absent 7]" {
		t.Errorf("got %v, %v, heads %v, after_sequence %s; want [8 9], no error, [7], [absent 7]", seqs, err, heads, afters)
	}
}
