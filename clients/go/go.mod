module github.com/rigger-dev/rigger/clients/go

// The oldest Go and dependency versions this module needs: Go 1.23 for
// range-over-func iterators (Watch returns an iter.Seq2), grpc 1.75 as the
// newest grpc that still supports Go 1.23 (grpc 1.76 needs 1.24), and the
// protobuf runtime the committed code was generated with. Builds pick newer
// versions when anything else asks for them.
go 1.23.0

require (
	google.golang.org/grpc v1.75.1
	google.golang.org/protobuf v1.36.11
)

require (
	golang.org/x/net v0.41.0 // indirect
	golang.org/x/sys v0.33.0 // indirect
	golang.org/x/text v0.26.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250707201910-8d1bb00bc6a7 // indirect
)
