module github.com/rigger-dev/rigger/conformance/executors/go

go 1.26.0

// grpc is newer than the client's minimum on purpose: the conformance suite
// runs the client on the newest grpc, the client's own tests on the oldest.
require (
	github.com/rigger-dev/rigger/clients/go v0.0.0
	golang.org/x/sys v0.48.0
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
)

// The executor always tests the client in this checkout.
replace github.com/rigger-dev/rigger/clients/go => ../../../clients/go
