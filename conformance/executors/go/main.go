// Command rigger-conformance is the Go executor of Rigger's conformance suite.
//
// It speaks the rigger.conformance.v1 harness protocol: size-delimited
// Instructions arrive on stdin, size-delimited Observations leave on stdout.
// It never judges anything. Each instruction is started as soon as it
// arrives, so calls run concurrently; whatever the server sends back is
// parsed with the generated rigger.v1 Go types and re-serialized, so the
// runner sees exactly what this language's generated code made of it.
//
// The runner (python -m conformance) builds and launches it; it is not meant
// to be run by hand.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"google.golang.org/protobuf/encoding/protodelim"

	hp "github.com/rigger-dev/rigger/conformance/executors/go/gen/rigger/conformance/v1"
)

// maxInstruction bounds one instruction frame. protodelim's default (4 MiB)
// would be too small for a case that sends a large request on purpose; the
// runner reads observations with the same 64 MiB limit.
const maxInstruction = 64 << 20

func main() {
	os.Exit(serve(os.Stdin, os.Stdout, os.Stderr))
}

// serve carries out instructions from in until Shutdown or the end of in,
// writing observations to out, and returns the exit code. Problems with the
// framing itself have no instruction to report them against, so they go to
// stderr, which the runner shows when the process dies.
func serve(in io.Reader, out, stderr io.Writer) int {
	obs := newObserver(out)
	e := newExecutor(obs)
	reader := bufio.NewReader(in)
	for {
		instruction := new(hp.Instruction)
		err := protodelim.UnmarshalOptions{MaxSize: maxInstruction}.UnmarshalFrom(reader, instruction)
		if errors.Is(err, io.EOF) {
			// The runner went away without Shutdown: clean up quietly.
			e.shutdown()
			return obs.exitCode(stderr)
		}
		if err != nil {
			fmt.Fprintf(stderr, "rigger-conformance: reading an instruction: %v\n", err)
			e.shutdown()
			return 1
		}
		if _, ok := instruction.GetAction().(*hp.Instruction_Shutdown); ok {
			e.shutdown()
			obs.done(instruction.GetId())
			return obs.exitCode(stderr)
		}
		e.dispatch(instruction)
	}
}

// observer is the only writer of stdout. The mutex keeps frames from
// interleaving; flushing after every frame matters because the runner
// measures delivery times and waits for answers.
type observer struct {
	mu  sync.Mutex
	w   *bufio.Writer
	err error // the first write error; later observations are dropped
}

func newObserver(w io.Writer) *observer {
	return &observer{w: bufio.NewWriter(w)}
}

func (o *observer) emit(observation *hp.Observation) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return
	}
	if _, err := protodelim.MarshalTo(o.w, observation); err != nil {
		o.err = err
		return
	}
	o.err = o.w.Flush()
}

// exitCode is 0 unless an observation could not be written.
func (o *observer) exitCode(stderr io.Writer) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		fmt.Fprintf(stderr, "rigger-conformance: writing observations: %v\n", o.err)
		return 1
	}
	return 0
}

func (o *observer) done(id uint64) {
	o.emit(&hp.Observation{InstructionId: id, Result: &hp.Observation_Done{Done: &hp.Done{}}})
}

func (o *observer) fail(id uint64, err error) {
	o.emit(&hp.Observation{InstructionId: id, Result: &hp.Observation_ExecutorError{
		ExecutorError: &hp.ExecutorError{Message: err.Error()},
	}})
}

func (o *observer) unaryResult(id uint64, r *hp.UnaryResult) {
	o.emit(&hp.Observation{InstructionId: id, Result: &hp.Observation_UnaryResult{UnaryResult: r}})
}

func (o *observer) streamHeaders(id uint64, h *hp.StreamHeaders) {
	o.emit(&hp.Observation{InstructionId: id, Result: &hp.Observation_StreamHeaders{StreamHeaders: h}})
}

func (o *observer) streamMessage(id uint64, m *hp.StreamMessage) {
	o.emit(&hp.Observation{InstructionId: id, Result: &hp.Observation_StreamMessage{StreamMessage: m}})
}

func (o *observer) streamEnd(id uint64, e *hp.StreamEnd) {
	o.emit(&hp.Observation{InstructionId: id, Result: &hp.Observation_StreamEnd{StreamEnd: e}})
}
