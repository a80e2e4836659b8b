package main

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	hp "github.com/rigger-dev/rigger/conformance/executors/go/gen/rigger/conformance/v1"
	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
)

// service is rigger.v1.RiggerService as compiled into the generated Go code;
// instructions name its methods.
var service = riggerv1.File_rigger_v1_rigger_proto.Services().ByName("RiggerService")

// lookup finds a RiggerService method by its short name, such as "AddTask".
func lookup(name string) (protoreflect.MethodDescriptor, error) {
	m := service.Methods().ByName(protoreflect.Name(name))
	if m == nil {
		return nil, fmt.Errorf("%s has no method %q", service.FullName(), name)
	}
	return m, nil
}

// fullMethod is the gRPC path of a method, "/rigger.v1.RiggerService/AddTask".
func fullMethod(m protoreflect.MethodDescriptor) string {
	return "/" + string(service.FullName()) + "/" + string(m.Name())
}

// newMessage makes an empty message of the generated Go type for d (such as
// *riggerv1.AddTaskRequest), which the import of riggerv1 registered.
func newMessage(d protoreflect.MessageDescriptor) proto.Message {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(d.FullName())
	if err != nil {
		panic(err) // every rigger.v1 message is registered by the import
	}
	return mt.New().Interface()
}

// parse decodes b as a message of type d with the generated Go code.
func parse(d protoreflect.MessageDescriptor, b []byte, what string) (proto.Message, error) {
	m := newMessage(d)
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%s does not parse as %s: %v", what, d.FullName(), err)
	}
	return m, nil
}

// reencode serializes what the generated code made of a received message.
// Deterministic, so that map fields come out in one order.
func reencode(m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// statusOf is the gRPC status of a call's error; nil means OK.
func statusOf(err error) *hp.Status {
	s := status.Convert(err)
	return &hp.Status{Code: uint32(s.Code()), Message: s.Message()}
}

// headersOf flattens metadata for an observation. grpc-go hands over -bin
// values already base64-decoded; the protocol wants them as on the wire,
// which grpc-go writes as unpadded standard base64. Keys are sorted only to
// make the output stable; values of one key keep their order.
func headersOf(md metadata.MD) []*hp.Header {
	var out []*hp.Header
	for _, key := range slices.Sorted(maps.Keys(md)) {
		lower := strings.ToLower(key)
		for _, value := range md[key] {
			if strings.HasSuffix(lower, "-bin") {
				value = base64.RawStdEncoding.EncodeToString([]byte(value))
			}
			out = append(out, &hp.Header{Key: lower, Value: value})
		}
	}
	return out
}

// monotonicNow reads CLOCK_MONOTONIC in nanoseconds. Go's own monotonic
// clock is not exposed as a number comparable across processes; this one
// is, and the runner compares it with its own time.monotonic_ns().
func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0 // cannot happen on Linux; 0 reads as "unknown"
	}
	return ts.Nano()
}
