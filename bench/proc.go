package bench

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux Go supports).
const clockTick = 10 * time.Millisecond

// Proc is a server process the benchmark started.
type Proc struct {
	Name     string
	GRPCAddr string
	HTTPAddr string // "" for the no-op server
	// MetricsAddr serves Tollgate's /metrics.
	MetricsAddr string
	// PprofAddr is where bench/profserve serves pprof, "" for none.
	PprofAddr string
	// web reaches /readyz and /metrics: over HTTPS when the replica serves
	// TLS (webScheme "https"), else plain HTTP.
	web       *http.Client
	webScheme string
	LogPath   string
	Started   time.Time
	cmd       *exec.Cmd
	log       *os.File
	exited    chan struct{}
	waitErr   error
}

// StartProc starts bin with args and env (added to this process's, minus
// any TOLLGATE_ variables), its output in logPath.
func StartProc(name, bin string, args, env []string, logPath string) (*Proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &Proc{Name: name, LogPath: logPath, log: f, exited: make(chan struct{}), web: httpClient, webScheme: "http"}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOLLGATE_") && !strings.HasPrefix(kv, "GODEBUG=") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.Started = time.Now()
	go func() {
		p.waitErr = p.cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM and waits up to grace, then kills.
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.exited:
		return p.waitErr
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	<-p.exited
	return fmt.Errorf("%s did not stop within %v of SIGTERM", p.Name, grace)
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// CPU returns the process's user+system CPU time from /proc/PID/stat.
func (p *Proc) CPU() (time.Duration, error) { return pidCPU(p.Pid()) }

// RSS returns VmRSS from /proc/PID/status, in bytes.
func (p *Proc) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", p.Pid())
}

// Tail returns the last n bytes of the process's output.
func (p *Proc) Tail(n int64) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	addrs, err := freeAddrs(1)
	if err != nil {
		return "", err
	}
	return addrs[0], nil
}

// freeAddrs returns n distinct loopback addresses whose ports were free a
// moment ago. All n listeners are open at once: the kernel may offer the
// port just closed to the next listen on port 0, which would give one
// process the same port twice.
func freeAddrs(n int) ([]string, error) {
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs, nil
}

// startServe starts "tollgate serve" on free loopback ports for gRPC, HTTP
// and metrics (never a default port another run may hold), with extra
// flags after those, and waits until it is ready.
func startServe(name, bin string, extra, env []string, logPath string) (*Proc, error) {
	return startServeWeb(name, bin, extra, env, logPath, httpClient, "http")
}

// startServeWeb is startServe for a replica whose HTTP listeners web and
// scheme reach (HTTPS, for one serving TLS).
func startServeWeb(name, bin string, extra, env []string, logPath string, web *http.Client, scheme string) (*Proc, error) {
	addrs, err := freeAddrs(3)
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--grpc-addr", addrs[0], "--http-addr", addrs[1], "--metrics-addr", addrs[2]}, extra...)
	p, err := StartProc(name, bin, args, env, logPath)
	if err != nil {
		return nil, err
	}
	p.GRPCAddr, p.HTTPAddr, p.MetricsAddr = addrs[0], addrs[1], addrs[2]
	p.web, p.webScheme = web, scheme
	if err := p.waitReady(20 * time.Second); err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	return p, nil
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// waitReady waits until the process answers: /readyz for Tollgate, a TCP
// connect for the no-op server.
func (p *Proc) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.Name, p.waitErr, p.Tail(4000))
		}
		if p.HTTPAddr != "" {
			if resp, err := p.web.Get(p.webScheme + "://" + p.HTTPAddr + "/readyz"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		} else if c, err := net.DialTimeout("tcp", p.GRPCAddr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %v:\n%s", p.Name, within, p.Tail(4000))
}

// Metrics reads /metrics into series → value, keyed by the series as
// printed (name and labels).
func (p *Proc) Metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", p.webScheme+"://"+p.MetricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.web.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// WaitMetric polls /metrics until series satisfies cond.
func (p *Proc) WaitMetric(ctx context.Context, series string, within time.Duration, cond func(float64) bool) error {
	deadline := time.Now().Add(within)
	var last float64
	for time.Now().Before(deadline) {
		m, err := p.Metrics(ctx)
		if err == nil {
			if v, ok := m[series]; ok {
				last = v
				if cond(v) {
					return nil
				}
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s: %s not as wanted within %v (last %v)", p.Name, series, within, last)
}

// pgSnapshot is the CPU time of each Postgres backend serving one database.
type pgSnapshot map[int]time.Duration

// snapshotPostgres reads the CPU time of every backend connected to the
// database at dbURL (by pg_stat_activity), from /proc.
func snapshotPostgres(ctx context.Context, db *sql.DB, name string) (pgSnapshot, error) {
	rows, err := db.QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1`, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := pgSnapshot{}
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		if c, err := pidCPU(pid); err == nil {
			out[pid] = c
		}
	}
	return out, rows.Err()
}

// since is the CPU the backends used after before was taken (backends
// that appeared since count whole).
func (s pgSnapshot) since(before pgSnapshot) time.Duration {
	var d time.Duration
	for pid, c := range s {
		d += c - before[pid]
	}
	return d
}

// pidCPU returns a process's user+system CPU time from /proc/PID/stat.
func pidCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields resume after
	// ')'. fs[0] is field 3 (state): utime is field 14, stime 15.
	s := string(b)
	fs := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ut, err1 := strconv.ParseInt(fs[11], 10, 64)
	st, err2 := strconv.ParseInt(fs[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * clockTick, nil
}
