package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// checkMethod is the ext_authz v3 Check RPC.
const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// Outcome is what one Check came to.
type Outcome struct {
	// Allowed is set for an OkHttpResponse.
	Allowed bool
	// Code is the deny code (the CheckResponse status message Tollgate
	// sets), "" for an allow.
	Code string
	// Err is the gRPC status code of a failed call; codes.OK otherwise.
	Err codes.Code
}

// Label names the outcome for counting: "allow", a deny code, or "error:<code>".
func (o Outcome) Label() string {
	switch {
	case o.Err != codes.OK:
		return "error:" + o.Err.String()
	case o.Allowed:
		return "allow"
	case o.Code == "":
		return "deny:?"
	}
	return o.Code
}

// payload is an already-encoded CheckRequest.
type payload struct{ b []byte }

// rawCodec sends pre-encoded requests as they are and reads just enough of
// each CheckResponse to classify it, so that the load generator spends as
// little as possible of the two cores it shares with the server.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	p, ok := v.(*payload)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	return p.b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	o, ok := v.(*Outcome)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	return classify(data, o)
}

// classify reads a CheckResponse's wire form: field 3 (ok_response) means
// allow, field 2 (denied_response) deny, and field 1 (status) carries the
// deny code in its message (field 2).
func classify(b []byte, o *Outcome) error {
	*o = Outcome{}
	denied := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			o.Code = statusMessage(v)
		case 2:
			denied = true
		case 3:
			o.Allowed = true
		}
	}
	if !denied && !o.Allowed {
		return fmt.Errorf("CheckResponse with neither ok_response nor denied_response")
	}
	if o.Allowed {
		o.Code = ""
	}
	return nil
}

// statusMessage returns google.rpc.Status.message (field 2).
func statusMessage(b []byte) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if num == 2 && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			return string(v)
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		b = b[n:]
	}
	return ""
}

// Target is an ext_authz server and a few connections to it, used in turn,
// as Envoy's worker threads each hold their own.
type Target struct {
	Name  string
	Addr  string
	conns []*grpc.ClientConn
	next  atomic.Uint64
}

// Dial opens n connections to addr.
func Dial(name, addr string, n int) (*Target, error) {
	return DialCreds(name, addr, n, insecure.NewCredentials())
}

// DialCreds is Dial with the given transport credentials (TLS).
func DialCreds(name, addr string, n int, creds credentials.TransportCredentials) (*Target, error) {
	t := &Target{Name: name, Addr: addr}
	for range n {
		c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
		if err != nil {
			t.Close()
			return nil, err
		}
		c.Connect()
		t.conns = append(t.conns, c)
	}
	return t, nil
}

// Close closes the connections.
func (t *Target) Close() {
	for _, c := range t.conns {
		c.Close()
	}
}

// Check sends one encoded CheckRequest.
func (t *Target) Check(ctx context.Context, req []byte) Outcome {
	c := t.conns[t.next.Add(1)%uint64(len(t.conns))]
	var o Outcome
	if err := c.Invoke(ctx, checkMethod, &payload{req}, &o); err != nil {
		return Outcome{Err: status.Code(err)}
	}
	return o
}

// Source yields the i-th request of a load and the answer Tollgate should
// give it ("" for allow, else the deny code). It must be safe for
// concurrent use and deterministic in i, so that two servers see the same
// requests.
type Source interface {
	Next(i uint64) (req []byte, want string)
}

// Result is one measured run of load against one server.
type Result struct {
	Server, Load string
	// Rate is the offered rate of an open-loop run, 0 for closed loop.
	Rate     float64
	Elapsed  time.Duration
	Requests int
	// Errors are gRPC failures; Wrong are answers that differ from what
	// the source expected (only counted when checking); Dropped are
	// open-loop requests not sent because too many were in flight.
	Errors, Wrong, Dropped int
	Codes                  map[string]int
	lat                    []time.Duration // sorted
	// ServerCPU and ClientCPU are user+system CPU time spent during the
	// run by the server process and by this process; MachineCPU is all
	// CPUs' busy time, so MachineCPU-ServerCPU-ClientCPU is everyone
	// else's (Postgres, and whatever else the machine was doing).
	ServerCPU, ClientCPU, MachineCPU time.Duration
}

// OtherLoad is the share of the machine's CPUs that neither the server nor
// the load generator used during the run.
func (r *Result) OtherLoad() float64 {
	other := r.MachineCPU - r.ServerCPU - r.ClientCPU
	return max(0, float64(other)/(float64(r.Elapsed)*float64(runtime.NumCPU())))
}

// RPS is the completed requests per second.
func (r *Result) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// CPUPerRequest is the server's CPU time per completed request.
func (r *Result) CPUPerRequest() time.Duration {
	if r.Requests == 0 {
		return 0
	}
	return r.ServerCPU / time.Duration(r.Requests)
}

// Pct returns the p-th percentile latency (0 < p <= 100).
func (r *Result) Pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(r.lat)))) - 1
	return r.lat[max(0, min(i, len(r.lat)-1))]
}

// DenyShare is the share of answers that were denies.
func (r *Result) DenyShare() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.Requests-r.Codes["allow"]-r.Errors) / float64(r.Requests)
}

func (r *Result) String() string {
	return fmt.Sprintf("%-9s %-28s %8.0f rps  p50 %-9v p99 %-9v max %-9v cpu/req %-8v client cpu/req %-8v other load %3.0f%% n=%d err=%d wrong=%d dropped=%d deny=%.1f%%",
		r.Server, r.Load, r.RPS(), r.Pct(50).Round(time.Microsecond), r.Pct(99).Round(time.Microsecond),
		r.Pct(100).Round(time.Microsecond), r.CPUPerRequest().Round(100*time.Nanosecond),
		(r.ClientCPU / time.Duration(max(r.Requests, 1))).Round(100*time.Nanosecond), 100*r.OtherLoad(),
		r.Requests, r.Errors, r.Wrong, r.Dropped, 100*r.DenyShare())
}

// Meter reads a server's CPU time; nil measures nothing.
type Meter func() (time.Duration, error)

// runSpec is what both loops share.
type runSpec struct {
	target  *Target
	src     Source
	check   bool // compare answers with the source's expectations
	timeout time.Duration
	cpu     Meter
	start   uint64 // first request index
}

// tally collects what the workers saw.
type tally struct {
	mu     sync.Mutex
	lat    []time.Duration
	codes  map[string]int
	errors int
	wrong  int
}

func (t *tally) add(lat []time.Duration, codes map[string]int, errs, wrong int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lat = append(t.lat, lat...)
	for k, v := range codes {
		t.codes[k] += v
	}
	t.errors += errs
	t.wrong += wrong
}

func (s *runSpec) one(ctx context.Context, i uint64) (Outcome, string, time.Duration) {
	req, want := s.src.Next(i)
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	start := time.Now()
	o := s.target.Check(cctx, req)
	took := time.Since(start)
	cancel()
	return o, want, took
}

func (s *runSpec) judge(o Outcome, want string) (errs, wrong int) {
	if o.Err != codes.OK {
		return 1, 0
	}
	if s.check && o.Code != want {
		return 0, 1
	}
	return 0, 0
}

// ClosedLoop runs workers that each send their next request as soon as the
// previous one is answered, for d, or until limit requests (if > 0) have
// been sent.
func ClosedLoop(ctx context.Context, t *Target, src Source, workers int, d time.Duration, limit int, cpu Meter, check bool, first uint64) (*Result, error) {
	s := &runSpec{target: t, src: src, check: check, timeout: 10 * time.Second, cpu: cpu, start: first}
	var counter atomic.Uint64
	counter.Store(first)
	end := first + uint64(limit)
	tl := &tally{codes: map[string]int{}}
	cpu0, err := s.cpuNow()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			codes := map[string]int{}
			var errs, wrong int
			for time.Now().Before(deadline) && ctx.Err() == nil {
				i := counter.Add(1) - 1
				if limit > 0 && i >= end {
					break
				}
				o, want, took := s.one(ctx, i)
				lat = append(lat, took)
				codes[o.Label()]++
				e, w := s.judge(o, want)
				errs, wrong = errs+e, wrong+w
			}
			tl.add(lat, codes, errs, wrong)
		})
	}
	wg.Wait()
	return s.finish(tl, "closed", 0, time.Since(start), cpu0, 0)
}

// OpenLoop sends requests at a fixed rate for d, whatever the answers'
// latency, keeping at most maxInFlight outstanding. Requests leave in
// sub-millisecond batches (timers are not finer than that here); latency
// is measured from each request's own send.
func OpenLoop(ctx context.Context, t *Target, src Source, rate float64, d time.Duration, cpu Meter, check bool, first uint64) (*Result, error) {
	const maxInFlight = 4000
	s := &runSpec{target: t, src: src, check: check, timeout: 10 * time.Second, cpu: cpu, start: first}
	total := int(rate * d.Seconds())
	lat := make([]time.Duration, total)
	outs := make([]Outcome, total)
	wants := make([]string, total)
	sent := make([]bool, total)
	var inFlight atomic.Int64
	dropped := 0
	cpu0, err := s.cpuNow()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	for n := 0; n < total && ctx.Err() == nil; {
		due := min(total, int(time.Since(start).Seconds()*rate)+1)
		for ; n < due; n++ {
			if inFlight.Load() >= maxInFlight {
				dropped++
				continue
			}
			inFlight.Add(1)
			sent[n] = true
			wg.Add(1)
			go func(n int) {
				defer wg.Done()
				defer inFlight.Add(-1)
				outs[n], wants[n], lat[n] = s.one(ctx, first+uint64(n))
			}(n)
		}
		time.Sleep(200 * time.Microsecond)
	}
	wg.Wait()
	elapsed := time.Since(start)
	tl := &tally{codes: map[string]int{}}
	keep := lat[:0]
	for n := range total {
		if !sent[n] {
			continue
		}
		keep = append(keep, lat[n])
		tl.codes[outs[n].Label()]++
		e, w := s.judge(outs[n], wants[n])
		tl.errors, tl.wrong = tl.errors+e, tl.wrong+w
	}
	tl.lat = keep
	return s.finish(tl, fmt.Sprintf("%.0f rps", rate), rate, elapsed, cpu0, dropped)
}

// cpuSample is the CPU time used so far by the server, this process and
// the whole machine.
type cpuSample struct{ server, client, machine time.Duration }

func (s *runSpec) cpuNow() (cpuSample, error) {
	var c cpuSample
	if s.cpu != nil {
		var err error
		if c.server, err = s.cpu(); err != nil {
			return c, err
		}
	}
	c.client, c.machine = selfCPU(), machineBusy()
	return c, nil
}

// machineBusy is the busy time of every CPU, from /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal …
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * clockTick
}

func (s *runSpec) finish(tl *tally, load string, rate float64, elapsed time.Duration, cpu0 cpuSample, dropped int) (*Result, error) {
	cpu1, err := s.cpuNow()
	if err != nil {
		return nil, err
	}
	slices.Sort(tl.lat)
	r := &Result{
		Server: s.target.Name, Load: load, Rate: rate, Elapsed: elapsed, Requests: len(tl.lat),
		Errors: tl.errors, Wrong: tl.wrong, Dropped: dropped, Codes: tl.codes, lat: tl.lat,
		ServerCPU: cpu1.server - cpu0.server, ClientCPU: cpu1.client - cpu0.client, MachineCPU: cpu1.machine - cpu0.machine,
	}
	return r, nil
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Workers is the closed-loop concurrency: enough to keep two cores busy
// through the round trips.
func Workers() int { return 32 * runtime.NumCPU() }

// merge combines the rounds of one load against one server into one
// result: their requests, CPU times and latencies together.
func merge(rs []*Result) *Result {
	if len(rs) == 1 {
		return rs[0]
	}
	m := &Result{Server: rs[0].Server, Load: rs[0].Load, Rate: rs[0].Rate, Codes: map[string]int{}}
	for _, r := range rs {
		m.Elapsed += r.Elapsed
		m.Requests += r.Requests
		m.Errors, m.Wrong, m.Dropped = m.Errors+r.Errors, m.Wrong+r.Wrong, m.Dropped+r.Dropped
		for k, v := range r.Codes {
			m.Codes[k] += v
		}
		m.lat = append(m.lat, r.lat...)
		m.ServerCPU += r.ServerCPU
		m.ClientCPU += r.ClientCPU
		m.MachineCPU += r.MachineCPU
	}
	slices.Sort(m.lat)
	return m
}
