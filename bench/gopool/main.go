// Command rigger-gopool holds many SubscribeToTaskEvents (or
// SubscribeToTaskEventBatches) streams over a few connections and records,
// per received message, the writer's stamp and the receive time on
// CLOCK_MONOTONIC. It is the Go twin of bench/subscribers.py: the fanout
// harness drives either the same way, so that from 100 subscribers up the
// receivers cost little CPU and the figures measure the server.
//
// Messages stay raw bytes (a codec that does not decode); the stamp is found
// in them as bench/payload.py writes it. Only at "take" is the first copy of
// each event decoded, with the generated rigger.v1 types, for the server's
// event timestamp.
//
// Protocol, on stdin and stdout, one command per line:
//
//	(start)     -> "ready <pid>" once every stream is live
//	count       -> {"count": N, "lagged": N, "disconnected": N}
//	take        -> a JSON header line, then the stamps and receive times as
//	               little-endian int64 arrays of the sizes the header gives
//	open_slow   -> "ok" once a stream that never reads is live
//	drain_slow  -> {"messages": N, "status": "RESOURCE_EXHAUSTED"}
//	stop        -> "bye", then exit
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	riggerv1 "github.com/rigger-dev/rigger/clients/go/gen/rigger/v1"
	"github.com/rigger-dev/rigger/clients/go/rigger"
)

const (
	plainMethod   = "/rigger.v1.RiggerService/SubscribeToTaskEvents"
	batchMethod   = "/rigger.v1.RiggerService/SubscribeToTaskEventBatches"
	stampDigits   = 19 // bench/payload.py: fixed width, so parsing is a slice
	readyTimeout  = 60 * time.Second
	slowTimeout   = 10 * time.Second
	resubscribeIn = 50 * time.Millisecond
	firstsShards  = 64
)

var mark = []byte("~stamp:")

// rawCodec leaves messages as bytes both ways. An empty request message
// encodes to zero bytes, which is what the harness's subscriptions send.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// clock reads CLOCK_MONOTONIC in nanoseconds, the clock the Python writer
// stamps with, through Go's own monotonic reading (vDSO, no syscall), offset
// once against a direct clock_gettime.
type clock struct {
	base     time.Time
	baseMono int64
}

func newClock() clock {
	best := clock{}
	bestSpan := time.Duration(1 << 62)
	for range 20 {
		before := time.Now()
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			fatalf("clock_gettime: %v", err)
		}
		after := time.Now()
		if span := after.Sub(before); span < bestSpan {
			bestSpan = span
			best = clock{base: before.Add(span / 2), baseMono: ts.Nano()}
		}
	}
	return best
}

func (c clock) now() int64 { return c.baseMono + int64(time.Since(c.base)) }

// streamLog is one stream's records since the last take. Each stream has its
// own, so receives never contend; take swaps them out under their locks.
type streamLog struct {
	mu       sync.Mutex
	stamps   []int64
	received []int64
	messages int64
}

// firsts keeps the first copy of each stamped message for take-time decoding,
// sharded so that streams on different cores rarely meet on one lock.
type firsts struct {
	shards [firstsShards]struct {
		mu sync.Mutex
		m  map[int64][]byte
	}
}

func newFirsts() *firsts {
	f := &firsts{}
	for i := range f.shards {
		f.shards[i].m = map[int64][]byte{}
	}
	return f
}

func (f *firsts) offer(stamp int64, data []byte) {
	shard := &f.shards[uint64(stamp)%firstsShards]
	shard.mu.Lock()
	if _, ok := shard.m[stamp]; !ok {
		shard.m[stamp] = data
	}
	shard.mu.Unlock()
}

func (f *firsts) swap() map[int64][]byte {
	all := map[int64][]byte{}
	for i := range f.shards {
		shard := &f.shards[i]
		shard.mu.Lock()
		for k, v := range shard.m {
			all[k] = v
		}
		shard.m = map[int64][]byte{}
		shard.mu.Unlock()
	}
	return all
}

type pool struct {
	address      string
	batched      bool
	clock        clock
	logs         []*streamLog
	firsts       *firsts
	lagged       atomic.Int64
	disconnected atomic.Int64
	endings      sync.Map // status codes already reported on stderr
}

func parseStamp(b []byte) (int64, bool) {
	if len(b) < stampDigits {
		return 0, false
	}
	var v int64
	for _, c := range b[:stampDigits] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// record notes one received message: its stamp (every stamp, for a batch)
// and the receive time. Unstamped messages (warm-up traffic) are ignored.
func (p *pool) record(log *streamLog, data []byte, now int64) {
	at := bytes.Index(data, mark)
	if at < 0 {
		return
	}
	log.mu.Lock()
	log.messages++
	for at >= 0 {
		start := at + len(mark)
		stamp, ok := parseStamp(data[start:])
		if !ok {
			break
		}
		log.stamps = append(log.stamps, stamp)
		log.received = append(log.received, now)
		p.firsts.offer(stamp, data)
		if !p.batched {
			break
		}
		next := bytes.Index(data[start+stampDigits:], mark)
		if next < 0 {
			break
		}
		at = start + stampDigits + next
	}
	log.mu.Unlock()
}

func (p *pool) method() string {
	if p.batched {
		return batchMethod
	}
	return plainMethod
}

// run keeps one subscription open; after a lag or a disconnect it counts it
// and resubscribes, live only, as the Python pool does.
func (p *pool) run(ctx context.Context, conn *grpc.ClientConn, log *streamLog, live func()) {
	desc := &grpc.StreamDesc{ServerStreams: true}
	announced := false
	for ctx.Err() == nil {
		err := func() error {
			stream, err := conn.NewStream(ctx, desc, p.method(),
				grpc.ForceCodecV2(rawCodec{}), grpc.WaitForReady(true))
			if err != nil {
				return err
			}
			if err := stream.SendMsg([]byte{}); err != nil {
				return err
			}
			if err := stream.CloseSend(); err != nil {
				return err
			}
			// Headers come once the server has registered the subscriber's queue.
			if _, err := stream.Header(); err != nil {
				return err
			}
			if !announced {
				announced = true
				live()
			}
			for {
				var data []byte
				if err := stream.RecvMsg(&data); err != nil {
					return err
				}
				p.record(log, data, p.clock.now())
			}
		}()
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.ResourceExhausted {
			p.lagged.Add(1)
		} else {
			p.disconnected.Add(1) // a subscription never ends by itself, even with io.EOF
			// Say once per status code why streams end: counts alone hide the cause.
			if _, seen := p.endings.LoadOrStore(status.Code(err), true); !seen {
				fmt.Fprintf(os.Stderr, "rigger-gopool: a stream ended: %v\n", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(resubscribeIn):
		}
	}
}

func (p *pool) count() map[string]int64 {
	var n int64
	for _, log := range p.logs {
		log.mu.Lock()
		n += int64(len(log.stamps))
		log.mu.Unlock()
	}
	return map[string]int64{"count": n, "lagged": p.lagged.Load(), "disconnected": p.disconnected.Load()}
}

// takeHeader mirrors bench.subscribers.Taken; the two arrays follow it.
type takeHeader struct {
	StampsBytes      int               `json:"stamps_bytes"`
	ReceivedBytes    int               `json:"received_bytes"`
	Timestamps       map[string]string `json:"timestamps"`
	RealtimeOffsetNs int64             `json:"realtime_offset_ns"`
	Lagged           int64             `json:"lagged"`
	Disconnected     int64             `json:"disconnected"`
	Messages         int64             `json:"messages"`
}

func (p *pool) take(out *bufio.Writer) error {
	var stamps, received []int64
	var messages int64
	for _, log := range p.logs {
		log.mu.Lock()
		stamps = append(stamps, log.stamps...)
		received = append(received, log.received...)
		messages += log.messages
		log.stamps, log.received, log.messages = nil, nil, 0
		log.mu.Unlock()
	}
	header := takeHeader{
		StampsBytes:      8 * len(stamps),
		ReceivedBytes:    8 * len(received),
		Timestamps:       p.timestamps(p.firsts.swap()),
		RealtimeOffsetNs: time.Now().UnixNano() - p.clock.now(),
		Lagged:           p.lagged.Swap(0),
		Disconnected:     p.disconnected.Swap(0),
		Messages:         messages,
	}
	line, err := json.Marshal(header)
	if err != nil {
		return err
	}
	out.Write(line)
	out.WriteByte('\n')
	if err := binary.Write(out, binary.LittleEndian, stamps); err != nil {
		return err
	}
	return binary.Write(out, binary.LittleEndian, received)
}

// timestamps decodes each event's first copy: stamp -> the server's RFC 3339
// event timestamp.
func (p *pool) timestamps(firsts map[int64][]byte) map[string]string {
	found := map[int64]string{}
	decoded := map[*byte]bool{}
	for stamp, data := range firsts {
		if !p.batched {
			event := &riggerv1.TaskEvent{}
			if proto.Unmarshal(data, event) == nil {
				found[stamp] = event.GetTimestamp()
			}
			continue
		}
		if len(data) == 0 || decoded[&data[0]] {
			continue // one batch holds many stamps: decode it once
		}
		decoded[&data[0]] = true
		batch := &riggerv1.SubscribeToTaskEventBatchesResponse{}
		if proto.Unmarshal(data, batch) != nil {
			continue
		}
		for _, event := range batch.GetEvents() {
			title := []byte(event.GetTask().GetTitle())
			if at := bytes.Index(title, mark); at >= 0 {
				if s, ok := parseStamp(title[at+len(mark):]); ok {
					found[s] = event.GetTimestamp()
				}
			}
		}
	}
	out := make(map[string]string, len(firsts))
	for stamp := range firsts {
		if ts, ok := found[stamp]; ok {
			out[strconv.FormatInt(stamp, 10)] = ts
		}
	}
	return out
}

// slowStream is a stream on its own connection that stops reading once live.
type slowStream struct {
	conn   *grpc.ClientConn
	stream grpc.ClientStream
	cancel context.CancelFunc
}

func openSlow(address string) (*slowStream, error) {
	// A fixed 64 KiB window turns grpc-go's BDP probing off, so the stall
	// reaches the server within a cell instead of being absorbed by a window
	// the client grows to megabytes.
	conn, err := rigger.Dial(address, rigger.Options{DialOptions: []grpc.DialOption{
		grpc.WithInitialWindowSize(65535), grpc.WithInitialConnWindowSize(65535),
	}})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, plainMethod,
		grpc.ForceCodecV2(rawCodec{}), grpc.WaitForReady(true))
	if err == nil {
		err = stream.SendMsg([]byte{})
	}
	if err == nil {
		err = stream.CloseSend()
	}
	if err == nil {
		_, err = stream.Header()
	}
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	return &slowStream{conn: conn, stream: stream, cancel: cancel}, nil
}

// upperSnake turns grpc-go's "ResourceExhausted" into Python's "RESOURCE_EXHAUSTED".
func upperSnake(name string) string {
	var b strings.Builder
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) && unicode.IsLower(rune(name[i-1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// drain reads what flow control let the server push, then the status.
func (s *slowStream) drain() (int, string) {
	defer s.conn.Close()
	defer s.cancel()
	type end struct {
		count int
		err   error
	}
	done := make(chan end, 1)
	go func() {
		count := 0
		for {
			var data []byte
			if err := s.stream.RecvMsg(&data); err != nil {
				done <- end{count, err}
				return
			}
			count++
		}
	}()
	select {
	case e := <-done:
		if errors.Is(e.err, io.EOF) {
			return e.count, "OK"
		}
		return e.count, upperSnake(status.Code(e.err).String())
	case <-time.After(slowTimeout):
		s.cancel()
		e := <-done
		return e.count, "STILL_OPEN"
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "rigger-gopool: "+format+"\n", args...)
	os.Exit(1)
}

func reply(out *bufio.Writer, v any) {
	line, err := json.Marshal(v)
	if err != nil {
		fatalf("encoding a reply: %v", err)
	}
	out.Write(line)
	out.WriteByte('\n')
}

func main() {
	address := flag.String("address", "", "server address, host:port")
	streams := flag.Int("streams", 1, "subscriber streams to hold")
	connections := flag.Int("connections", 1, "TCP connections to spread them over")
	batched := flag.Bool("batched", false, "SubscribeToTaskEventBatches instead of SubscribeToTaskEvents")
	openRate := flag.Int("open-rate", 0, "open at most this many streams per second (0: all at once)")
	flag.Parse()
	if *address == "" || *streams < 1 || *connections < 1 {
		fatalf("need -address, and -streams and -connections of at least 1")
	}
	p := &pool{address: *address, batched: *batched, clock: newClock(), firsts: newFirsts()}
	conns := make([]*grpc.ClientConn, min(*connections, *streams))
	for i := range conns {
		// Each ClientConn is its own TCP connection, as separate sidecars
		// would have: the kernel spreads connections over `--workers`.
		conn, err := rigger.Dial(*address, rigger.Options{})
		if err != nil {
			fatalf("dial %s: %v", *address, err)
		}
		conns[i] = conn
	}
	ctx, cancel := context.WithCancel(context.Background())
	liveCh := make(chan struct{}, *streams)
	var wg sync.WaitGroup
	deadline := time.After(readyTimeout)
	for i := range *streams {
		log := &streamLog{}
		p.logs = append(p.logs, log)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx, conns[i%len(conns)], log, func() { liveCh <- struct{}{} })
		}()
		// In steps of 10 ms, so that thousands of streams do not all open at once.
		if step := max(1, *openRate/100); *openRate > 0 && (i+1)%step == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for range *streams {
		select {
		case <-liveCh:
		case <-deadline:
			fatalf("not every stream was live after %s", readyTimeout)
		}
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	fmt.Fprintf(out, "ready %d\n", os.Getpid())
	out.Flush()

	var slow *slowStream
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch command := strings.TrimSpace(in.Text()); command {
		case "count":
			reply(out, p.count())
		case "take":
			if err := p.take(out); err != nil {
				fatalf("take: %v", err)
			}
		case "open_slow":
			s, err := openSlow(*address)
			if err != nil {
				fatalf("open_slow: %v", err)
			}
			slow = s
			reply(out, "ok")
		case "drain_slow":
			messages, code := 0, "NONE"
			if slow != nil {
				messages, code = slow.drain()
				slow = nil
			}
			reply(out, map[string]any{"messages": messages, "status": code})
		case "stop":
			reply(out, "bye")
			out.Flush()
			cancel()
			wg.Wait()
			for _, conn := range conns {
				conn.Close()
			}
			return
		default:
			fatalf("unknown command %q", command)
		}
		out.Flush()
	}
	cancel() // stdin closed: the harness is gone
}
